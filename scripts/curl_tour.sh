#!/usr/bin/env bash
# The README's curl tour, runnable: against a `make run` server (or BASE / TOKEN given).
# Each step fails loudly (curl -f) on an HTTP error; tests/serving runs it on a live server.
set -euo pipefail
BASE=${BASE:-http://127.0.0.1:8765}
TOKEN=${TOKEN:-$(cat .labelengine/api_token)}
H="Authorization: Bearer $TOKEN"
J="Content-Type: application/json"
field() { python3 -c 'import json,sys; v=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }

echo "== health";      curl -fsS "$BASE/health"; echo
echo "== items";       curl -fsS -H "$H" "$BASE/items?limit=5"; echo
echo "== next";        lease=$(curl -fsS -H "$H" -H 'X-Annotator: ada' -X POST "$BASE/queue/next")
echo "$lease"
ITEM_ID=$(field "$lease" 'v["item_id"]')
echo "== suggestions"; suggestions=$(curl -fsS -H "$H" "$BASE/items/$ITEM_ID/suggestions?min_score=0.25")
echo "$suggestions"
SUGGESTION_ID=$(field "$suggestions" 'v[0]["suggestion_id"] if v else "null"')
echo "== feedback";    curl -fsS -H "$H" -H 'X-Annotator: ada' -H "$J" -X POST "$BASE/feedback" \
  -d "{\"client_key\": \"ada-$ITEM_ID\", \"item_id\": \"$ITEM_ID\", \"suggestion_id\": $SUGGESTION_ID, \"action\": \"accept\"}"; echo
# The answer is read whole, then shortened (piping into `head` could cut curl off: exit 23).
echo "== segment";     seg=$(curl -fsS -H "$H" -H "$J" -X POST "$BASE/interactive/segment" \
  -d "{\"item_id\": \"$ITEM_ID\", \"points_xy\": [[320, 240]], \"point_labels\": [1]}")
echo "${seg:0:300}"
echo "== job";         job=$(curl -fsS -H "$H" -H "$J" -X POST "$BASE/jobs" -d '{"model": "yolo11n"}')
echo "$job"
JOB_ID=$(field "$job" 'v["job_id"]')
echo "== job state";   curl -fsS -H "$H" "$BASE/jobs/$JOB_ID"; echo
echo "tour ok"
