#!/bin/sh
# One-shot setup of the docker-compose demo: registers the demo webhook (the
# receiver service) through the admin API and hands its signing secret to
# the receiver through the shared volume. Safe to run again.
set -eu
api=${FEEDBACKD_API:-http://feedbackd:8080}
secret_file=${SECRET_FILE:-/shared/secret}
auth="Authorization: Bearer ${FEEDBACKD_ADMIN_TOKEN}"
body='{"imsOrg":"myImsOrg","sandbox":{"id":"my-sandbox","name":"prod"},"name":"Compose demo receiver","channels":["email","sms"],"url":"http://receiver:9000/webhook"}'

tries=0
until curl -fsS "$api/readyz" >/dev/null 2>&1; do
  tries=$((tries + 1)); [ "$tries" -le 150 ] || { echo "setup: feedbackd not ready after 5 minutes"; exit 1; }
  echo "setup: waiting for feedbackd"; sleep 2
done
# A webhook left by an earlier run has a secret we cannot read back: replace it.
curl -sS -o /dev/null -X DELETE -H "$auth" "$api/v1/webhooks/myImsOrg/my-sandbox"
code=$(curl -sS -o /tmp/created.json -w '%{http_code}' -H "$auth" -H 'Content-Type: application/json' -d "$body" "$api/v1/webhooks")
if [ "$code" != 201 ]; then echo "setup: creating the webhook answered $code:"; cat /tmp/created.json; exit 1; fi
sed -n 's/.*"signingSecret": *"\(whsec_[^"]*\)".*/\1/p' /tmp/created.json > "$secret_file"
echo "setup: demo webhook myImsOrg/my-sandbox -> http://receiver:9000/webhook registered"
