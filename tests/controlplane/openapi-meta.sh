#!/usr/bin/env bash
# Owns: refreshing src/api/openapi/meta-v{2,3}.json, the apimachinery schemas (ObjectMeta, ListMeta, Status, ...) the
# server's OpenAPI documents embed. kubectl resolves every $ref inside one group-version's v3 document, so that document
# must carry them; they are taken verbatim from the pinned kube-apiserver, so they match what kubectl knows.
#
# Usage: openapi-meta.sh ENV_FILE   (an env file from tests/controlplane/up.sh or tests/env/up.sh)
set -euo pipefail
env_file="${1:?usage: openapi-meta.sh ENV_FILE}"
# shellcheck disable=SC1090
source "$env_file"
out="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/src/api/openapi"
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
k get --raw /openapi/v3/api/v1 >"$STATE_DIR/core-v3.json"
k get --raw /openapi/v2 >"$STATE_DIR/v2.json"
python3 - "$STATE_DIR/core-v3.json" "$STATE_DIR/v2.json" "$out" <<'PY'
import json, sys
roots = ["ObjectMeta", "ListMeta", "DeleteOptions", "Status", "WatchEvent", "Patch"]
prefix = "io.k8s.apimachinery.pkg.apis.meta.v1."

def closure(schemas, ref_prefix):
    keep, todo = {}, [prefix + r for r in roots]
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep[name] = schemas[name]
        text = json.dumps(schemas[name])
        for part in text.split('"$ref": "')[1:]:
            todo.append(part.split('"')[0].removeprefix(ref_prefix))
    return dict(sorted(keep.items()))

v3 = json.load(open(sys.argv[1]))["components"]["schemas"]
v2 = json.load(open(sys.argv[2]))["definitions"]
json.dump(closure(v3, "#/components/schemas/"), open(sys.argv[3] + "/meta-v3.json", "w"), indent=1, sort_keys=True)
json.dump(closure(v2, "#/definitions/"), open(sys.argv[3] + "/meta-v2.json", "w"), indent=1, sort_keys=True)
PY
echo "wrote $out/meta-v2.json and $out/meta-v3.json" >&2
