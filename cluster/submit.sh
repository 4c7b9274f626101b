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
#   --pass-env NAME  copy $NAME (not a secret: Ray keeps a job's runtime env) from this shell into
#                    the job's environment; secrets belong in the cluster's environment (README)
#
# Exit status: 0 when the job SUCCEEDED, 1 otherwise (FAILED or STOPPED), 2 for bad usage.
set -euo pipefail

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

address="${RAY_ADDRESS:-}"
submission_id=""
runtime_env="cluster/runtime_env.yaml"
pass_env=()
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

# Submitted through Ray's Jobs SDK: the runtime env never appears on a command line, and each
# argument of the job's shell command is quoted (cluster/submit_job.py).
PASS_ENV="${pass_env[*]}" "$python" "$(dirname "$0")/submit_job.py" "$address" "$submission_id" "$runtime_env" "$config" "$@"

ray job logs --address "$address" --follow "$submission_id" || true
status="$("$python" -c 'import sys; from ray.job_submission import JobSubmissionClient as C; print(C(sys.argv[1]).get_job_status(sys.argv[2]).value)' "$address" "$submission_id" 2>/dev/null || true)"
echo "job $submission_id: ${status:-UNKNOWN}"
[ "$status" = "SUCCEEDED" ]
