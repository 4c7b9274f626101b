#!/usr/bin/env bash
# Submit a λ sweep to a Ray cluster with `ray job submit`, follow its logs, exit with its status.
#
#   cluster/submit.sh [--address ADDR] [--submission-id ID] [--runtime-env FILE] [--pass-env NAME]...
#                     SWEEP_CONFIG [key=value ...]
#
#   --address        the cluster's dashboard, e.g. http://127.0.0.1:8265 (default: $RAY_ADDRESS)
#   --submission-id  the job's id (default: lambda-dpo-<config name>-<date>-<time>); `ray job
#                    status|logs|stop ID` use it
#   --runtime-env    default cluster/runtime_env.yaml (working_dir: the repository)
#   --pass-env NAME  copy $NAME from this shell into the job's environment; HF_TOKEN is always
#                    copied when it is set. Values are handed to Ray, never written to a file.
#
# Exit status: 0 when the job SUCCEEDED, 1 otherwise (FAILED or STOPPED), 2 for bad usage.
set -euo pipefail

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

address="${RAY_ADDRESS:-}"
submission_id=""
runtime_env="cluster/runtime_env.yaml"
pass_env=(HF_TOKEN)
while [ $# -gt 0 ]; do
  case "$1" in
    --address) address="$2"; shift 2 ;;
    --submission-id) submission_id="$2"; shift 2 ;;
    --runtime-env) runtime_env="$2"; shift 2 ;;
    --pass-env) pass_env+=("$2"); shift 2 ;;
    -h|--help) usage ;;
    --*) echo "submit.sh: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "submit.sh: give a sweep config (e.g. configs/sweep/tiny.yaml)" >&2; usage; }
[ -n "$address" ] || { echo "submit.sh: no cluster address: pass --address or set RAY_ADDRESS" >&2; exit 2; }
config="$1"; shift
[ -f "$config" ] || { echo "submit.sh: sweep config not found: $config" >&2; exit 2; }
[ -f "$runtime_env" ] || { echo "submit.sh: runtime env not found: $runtime_env" >&2; exit 2; }
submission_id="${submission_id:-lambda-dpo-$(basename "$config" .yaml)-$(date +%Y%m%d-%H%M%S)}"
python="${PYTHON:-python3}"

# Fail here, in seconds, rather than on the cluster: the config must pass --dry-run.
"$python" -m lambda_dpo.cli sweep "$config" "$@" --dry-run > /dev/null

# The runtime env of the YAML file plus the passed-through variables, as JSON for --runtime-env-json.
runtime_env_json="$(PASS_ENV="${pass_env[*]}" "$python" - "$runtime_env" <<'PY'
import json, os, sys
import yaml
env = yaml.safe_load(open(sys.argv[1])) or {}
variables = dict(env.get("env_vars") or {})
variables.update({name: os.environ[name] for name in os.environ.get("PASS_ENV", "").split() if name in os.environ})
env["env_vars"] = variables
print(json.dumps(env))
PY
)"

entrypoint=(python -m lambda_dpo.cli sweep "$config" "$@")
echo "submitting $submission_id to $address: ${entrypoint[*]}"
# The job agent can take a few seconds to come up on a fresh head ("No available agent").
for attempt in 1 2 3 4 5 6 7 8 9 10; do
  if ray job submit --address "$address" --submission-id "$submission_id" --runtime-env-json "$runtime_env_json" \
      --no-wait -- "${entrypoint[@]}"; then
    break
  fi
  [ "$attempt" -lt 10 ] || { echo "submit.sh: could not submit to $address" >&2; exit 1; }
  sleep 3
done

ray job logs --address "$address" --follow "$submission_id" || true
status="$("$python" -c 'import sys; from ray.job_submission import JobSubmissionClient as C; print(C(sys.argv[1]).get_job_status(sys.argv[2]).value)' "$address" "$submission_id" 2>/dev/null || true)"
echo "job $submission_id: ${status:-UNKNOWN}"
[ "$status" = "SUCCEEDED" ]
