#!/usr/bin/env bash
# A tour of the HTTP API against a running `labelengine serve` (see README.md).
set -euo pipefail
BASE=${BASE:-http://127.0.0.1:8765}
TOKEN=${TOKEN:-$(cat .labelengine/api_token)}
auth=(-H "Authorization: Bearer $TOKEN" -H "X-Annotator: ${ANNOTATOR:-tour}")

curl -fsS "$BASE/health"; echo
lease=$(curl -fsS "${auth[@]}" -X POST "$BASE/queue/next")
echo "leased: $lease"
item_id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["item_id"])' "$lease")
curl -fsS "${auth[@]}" "$BASE/items/$item_id/suggestions?min_score=0.25"; echo
curl -fsS "${auth[@]}" -X POST "$BASE/feedback" -H 'Content-Type: application/json' \
  -d "{\"client_key\": \"tour-$item_id\", \"item_id\": \"$item_id\", \"action\": \"accept\"}"; echo
