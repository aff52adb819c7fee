// COCO compressed RLE (pycocotools' rleToString / rleFrString), decoded in the browser.
//
// A mask of height h and width w is read column-major (x outer, y inner) as runs
// that alternate 0s and 1s, starting with 0s. Each run length is written as
// 5-bit groups, least significant first, as chars 48 + group (+ 32 while more
// groups follow; bit 16 of the last group is the sign). From the third run on,
// what is stored is the difference to the run two places before.

export function decodeCounts(counts) {
  const runs = [];
  let p = 0;
  while (p < counts.length) {
    let x = 0;
    let k = 0;
    let more = true;
    while (more) {
      if (p >= counts.length) throw new Error("truncated RLE counts string");
      const c = counts.charCodeAt(p) - 48;
      x += (c & 0x1f) * 2 ** (5 * k);
      more = (c & 0x20) !== 0;
      p += 1;
      k += 1;
      if (!more && (c & 0x10) !== 0) x -= 2 ** (5 * k);
    }
    if (runs.length > 2) x += runs[runs.length - 2];
    runs.push(x);
  }
  return runs;
}

// The mask as a row-major Uint8Array of h * w zeros and ones.
export function decodeMask(counts, height, width) {
  const total = height * width;
  const out = new Uint8Array(total);
  const runs = decodeCounts(counts);
  let index = 0;
  for (let r = 0; r < runs.length; r += 1) {
    const length = runs[r];
    if (length < 0 || index + length > total) throw new Error("RLE runs do not fit the mask size");
    if (r % 2 === 1) {
      for (let i = index; i < index + length; i += 1) {
        out[(i % height) * width + Math.floor(i / height)] = 1;
      }
    }
    index += length;
  }
  return out;
}

export function maskArea(mask) {
  let area = 0;
  for (const v of mask) area += v;
  return area;
}
