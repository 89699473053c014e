"""Write schemas/*.schema.json from the pydantic models in dsforge/records.py (rows, the dataset_info
entry, candidate and judged_candidate) and dsforge/recipe.py.

    python scripts/gen_schemas.py           # write
    python scripts/gen_schemas.py --check   # exit 1 if the committed files differ (used by the tests)
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dsforge.recipe import PipelineRecipe  # noqa: E402
from dsforge.records import ROW_MODELS, STAGE_RECORDS  # noqa: E402


def render() -> dict[str, str]:
    out = {}
    for name, model in {**ROW_MODELS, **STAGE_RECORDS, "pipeline_recipe": PipelineRecipe}.items():
        schema = model.model_json_schema(by_alias=True)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://dsforge.dev/schemas/{name}.schema.json"
        out[f"{name}.schema.json"] = json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    return out


def main() -> int:
    target = ROOT / "schemas"
    files = render()
    if "--check" in sys.argv:
        stale = [n for n, text in files.items() if not (target / n).exists() or (target / n).read_text() != text]
        if stale:
            print("schemas out of date: " + ", ".join(stale) + " (run python scripts/gen_schemas.py)")
            return 1
        return 0
    target.mkdir(exist_ok=True)
    for n, text in files.items():
        (target / n).write_text(text)
    print(f"wrote {len(files)} schemas to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
