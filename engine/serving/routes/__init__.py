"""One ``APIRouter`` per resource; ``create_app`` mounts them."""
