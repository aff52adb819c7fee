"""Label Studio labeling configs: parse the XML into the controls the engine can fill.

A config pairs *control* tags (what an annotator produces: ``RectangleLabels``,
``BrushLabels``, ``PolygonLabels``, ``KeyPointLabels``, ``Labels``,
``Choices``) with *object* tags (what is shown: ``Image``, ``Text``) through
``toName``; an object reads its data from the task (``value="$image"``).
Label values map model class names through their own value, ``alias`` and
``predicted_values`` (comma-separated class names), case-insensitively. Label
Studio writes a label's ``alias`` (else its ``value``) into results; the engine
speaks the ``value`` (the project's label), so both directions translate.

Parsing is safe by construction: a DTD or entity declaration is refused
before anything is expanded (no billion-laughs, no external entities).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from xml.etree import ElementTree
from xml.parsers import expat

SHAPE_CONTROLS = ("RectangleLabels", "BrushLabels", "PolygonLabels", "KeyPointLabels")
CONTROL_TAGS = (*SHAPE_CONTROLS, "Labels", "Choices")
OBJECT_TAGS = {"image": "Image", "text": "Text"}
_CONTROL_OBJECTS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(SHAPE_CONTROLS, ("Image",)),
    "Labels": ("Text",),
    "Choices": ("Image", "Text"),
}
_CANONICAL = {tag.lower(): tag for tag in (*CONTROL_TAGS, *OBJECT_TAGS.values())}


@dataclass(frozen=True)
class LabelValue:
    """One ``<Label>`` / ``<Choice>``: the project's label and the class names it accepts."""

    value: str
    alias: str | None = None
    predicted_values: tuple[str, ...] = ()

    @property
    def result_value(self) -> str:
        """What Label Studio writes in results for this label: its alias, else its value."""
        return self.alias or self.value


@dataclass(frozen=True)
class ObjectTag:
    """An ``<Image>`` or ``<Text>`` tag; ``data_key`` is its ``value`` without the ``$``."""

    tag: str
    name: str
    data_key: str

    @property
    def kind(self) -> str:
        return "image" if self.tag == "Image" else "text"


@dataclass(frozen=True)
class ControlTag:
    """A control tag the engine can fill, bound to its object."""

    tag: str
    name: str
    target: ObjectTag
    labels: tuple[LabelValue, ...]

    @property
    def to_name(self) -> str:
        return self.target.name

    @property
    def result_type(self) -> str:
        """The ``type`` of its results (``rectanglelabels``, ``choices``...)."""
        return self.tag.lower()

    @functools.cached_property
    def _lookup(self) -> Mapping[str, LabelValue]:
        """Class name (casefolded) -> label; values beat aliases beat predicted_values."""
        table: dict[str, LabelValue] = {}
        for label in self.labels:
            table.setdefault(label.value.casefold(), label)
        for label in self.labels:
            if label.alias:
                table.setdefault(label.alias.casefold(), label)
        for label in self.labels:
            for class_name in label.predicted_values:
                table.setdefault(class_name.casefold(), label)
        return table

    def label_for(self, class_name: str) -> LabelValue | None:
        """The label a model class maps to (case-insensitive), or ``None`` when unmapped."""
        return self._lookup.get(class_name.strip().casefold())

    def label_of_result(self, result_value: str) -> LabelValue | None:
        """The label behind a value found in a result (its alias or, leniently, its value)."""
        for label in self.labels:
            if result_value in (label.result_value, label.value):
                return label
        return None


@dataclass(frozen=True)
class LabelingConfig:
    """The servable part of a labeling config."""

    controls: tuple[ControlTag, ...]
    objects: tuple[ObjectTag, ...]

    def controls_of(self, *result_types: str) -> tuple[ControlTag, ...]:
        return tuple(c for c in self.controls if c.result_type in result_types)

    def control(self, name: str) -> ControlTag:
        for control in self.controls:
            if control.name == name:
                return control
        known = ", ".join(c.name for c in self.controls)
        raise ValueError(f"labeling config has no control named {name!r} (known: {known})")

    def object_for(self, kind: str) -> ObjectTag | None:
        """The first object tag showing items of ``kind`` (``image`` / ``text``)."""
        return next((o for o in self.objects if o.kind == kind), None)


def parse_labeling_config(xml_text: str) -> LabelingConfig:
    """Parse a labeling config; ``ValueError`` naming the problem if the engine cannot serve it."""
    root = _parse_xml(xml_text)
    if root.tag != "View":
        raise ValueError(f"labeling config root must be <View>, got <{root.tag}>")
    objects = _objects(root)
    controls, ignored = _controls(root, objects)
    if not controls:
        found = ", ".join(ignored) or "no control tags at all"
        raise ValueError(
            "labeling config has no control the engine can serve: it needs RectangleLabels, "
            "BrushLabels, PolygonLabels or KeyPointLabels on an <Image>, Labels on a <Text>, "
            f"or Choices on either (found: {found})"
        )
    used = {c.to_name for c in controls}
    return LabelingConfig(tuple(controls), tuple(o for o in objects.values() if o.name in used))


# -- XML ------------------------------------------------------------------------


def _refuse(what: str) -> Any:
    def handler(*_args: Any) -> NoReturn:
        raise ValueError(f"labeling config must not contain {what}; remove it")

    return handler


def _parse_xml(xml_text: str) -> ElementTree.Element:
    """Parse with expat directly, refusing DTDs and entity declarations up front."""
    if not isinstance(xml_text, str) or not xml_text.strip():
        raise ValueError("labeling config is empty; expected XML starting with <View>")
    builder = ElementTree.TreeBuilder()
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse("a DTD (<!DOCTYPE ...>)")
    parser.EntityDeclHandler = _refuse("entity declarations (<!ENTITY ...>)")
    parser.UnparsedEntityDeclHandler = _refuse("entity declarations (<!ENTITY ...>)")
    parser.ExternalEntityRefHandler = _refuse("external entity references")
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(xml_text, True)
    except expat.ExpatError as exc:
        raise ValueError(f"labeling config is not well-formed XML: {exc}") from exc
    root = builder.close()
    for element in root.iter():
        element.tag = _CANONICAL.get(element.tag.lower(), element.tag)
    return root


def _attr(element: ElementTree.Element, name: str) -> str | None:
    for key, value in element.attrib.items():
        if key.lower() == name.lower():
            return value.strip()
    return None


# -- tags ---------------------------------------------------------------------


def _objects(root: ElementTree.Element) -> dict[str, ObjectTag]:
    objects: dict[str, ObjectTag] = {}
    for element in root.iter():
        if element.tag not in OBJECT_TAGS.values():
            continue
        name, value = _attr(element, "name"), _attr(element, "value")
        if not name:
            raise ValueError(f"<{element.tag}> has no name attribute")
        if not value or not value.startswith("$") or len(value) < 2:
            raise ValueError(
                f'<{element.tag} name="{name}"> needs value="$key" naming the task data field '
                f"(got {value!r})"
            )
        if name in objects:
            raise ValueError(f"labeling config has two tags named {name!r}")
        objects[name] = ObjectTag(element.tag, name, value[1:])
    return objects


def _controls(
    root: ElementTree.Element, objects: Mapping[str, ObjectTag]
) -> tuple[list[ControlTag], list[str]]:
    controls: list[ControlTag] = []
    ignored: list[str] = []
    for element in root.iter():
        to_name = _attr(element, "toName")
        if element.tag not in CONTROL_TAGS:
            if to_name is not None:
                ignored.append(f"{element.tag}->{to_name}")
            continue
        control = _control(element, to_name, objects)
        if control is None:
            ignored.append(f"{element.tag}->{to_name}")
        elif any(c.name == control.name for c in controls):
            raise ValueError(f"labeling config has two controls named {control.name!r}")
        else:
            controls.append(control)
    return controls, ignored


def _control(
    element: ElementTree.Element, to_name: str | None, objects: Mapping[str, ObjectTag]
) -> ControlTag | None:
    name = _attr(element, "name")
    if not name:
        raise ValueError(f"<{element.tag}> has no name attribute")
    where = f'<{element.tag} name="{name}">'
    if not to_name:
        raise ValueError(f"{where} has no toName attribute naming the object it labels")
    if "," in to_name:
        raise ValueError(f"{where} points to several objects ({to_name}); use one per control")
    target = objects.get(to_name)
    if target is None:
        known = ", ".join(objects) or "none"
        raise ValueError(
            f'{where} has toName="{to_name}" but no object tag has that name (objects: {known})'
        )
    if target.tag not in _CONTROL_OBJECTS[element.tag]:
        return None
    labels = _labels(element)
    if not labels:
        child = "Choice" if element.tag == "Choices" else "Label"
        raise ValueError(f'{where} has no <{child} value="..."> children')
    return ControlTag(element.tag, name, target, labels)


def _labels(element: ElementTree.Element) -> tuple[LabelValue, ...]:
    child_tag = "choice" if element.tag == "Choices" else "label"
    labels: list[LabelValue] = []
    for child in element.iter():
        if child is element or child.tag.lower() != child_tag:
            continue
        value = _attr(child, "value")
        if not value:
            raise ValueError(f"<{child.tag}> inside <{element.tag}> has no value attribute")
        predicted = tuple(
            p.strip() for p in (_attr(child, "predicted_values") or "").split(",") if p.strip()
        )
        labels.append(LabelValue(value, _attr(child, "alias") or None, predicted))
    return tuple(labels)
