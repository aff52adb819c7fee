"""Request (``*In``) and response (``*Out``) bodies of the HTTP API.

Units live in names: ``box_xyxy`` is absolute pixels ``[x1, y1, x2, y2]``,
span offsets are characters into the item text (half-open ``[start, end)``),
scores are in [0, 1]. Regions are tagged by ``kind`` (``box``, ``mask``,
``span``). These schemas know pydantic and the core types, nothing else.

One module per resource: ``common`` (errors, health), ``regions``, ``items``,
``feedback``, ``jobs``, ``queue``, ``interactive``.
"""
