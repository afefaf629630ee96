"""Checks Konsult's OpenAPI document and JSON bodies against schemas.

usage: check_openapi.py DOCUMENT.json [SAMPLES.json]

1. Validates DOCUMENT with openapi-spec-validator (OpenAPI 3.1) and prints
   every error it finds.
2. If SAMPLES is given (a JSON array of {"name", "schema", "instance"}),
   validates each instance with jsonschema (Draft 2020-12, formats checked)
   against its schema: "schema" is a JSON pointer into DOCUMENT
   ("#/components/schemas/Problem", "#/paths/~1api~1x/get/responses/200/
   content/application~1json/schema") or the path of a JSON Schema file
   (a "$ref" inside it resolves within that file).

Exits 0 when everything is valid, 1 otherwise.
"""

import json
import sys

from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOC_URI = "urn:konsult:openapi"


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        doc = json.load(f)
    failures = 0

    errors = list(OpenAPIV31SpecValidator(doc).iter_errors())
    for e in errors:
        where = "/".join(str(p) for p in e.absolute_path) or "(document)"
        print(f"openapi: {where}: {e.message}")
    failures += len(errors)
    print(f"openapi-spec-validator: {len(errors)} error(s) in {len(doc.get('paths', {}))} paths")

    if len(argv) == 3:
        with open(argv[2], encoding="utf-8") as f:
            samples = json.load(f)
        registry = Registry().with_resource(
            DOC_URI, Resource(contents=doc, specification=DRAFT202012)
        )
        for sample in samples:
            target = sample["schema"]
            if target.startswith("#"):
                schema = {"$ref": DOC_URI + target}
            else:
                with open(target, encoding="utf-8") as f:
                    schema = json.load(f)
            validator = Draft202012Validator(
                schema,
                registry=registry,
                format_checker=Draft202012Validator.FORMAT_CHECKER,
            )
            sample_errors = sorted(
                validator.iter_errors(sample["instance"]), key=lambda e: list(e.absolute_path)
            )
            for e in sample_errors[:20]:
                where = "/".join(str(p) for p in e.absolute_path) or "(root)"
                print(f"{sample['name']}: {where}: {e.message[:300]}")
            failures += len(sample_errors)
        print(f"jsonschema: {len(samples)} sample(s) checked")

    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
