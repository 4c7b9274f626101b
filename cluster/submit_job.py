"""Submit ``lambda-dpo sweep CONFIG [overrides]`` as a Ray job through the Jobs SDK (submit.sh calls it).

    python cluster/submit_job.py ADDRESS SUBMISSION_ID RUNTIME_ENV_YAML CONFIG [key=value ...]

The job runs its entrypoint with a shell, so every argument is quoted with ``shlex.join``: an
override such as ``name=x;echo $(whoami)`` reaches the sweep as that literal text. The runtime env
goes to Ray inside this process, never on a command line (``ps`` would show it). Variables named
in ``PASS_ENV`` are copied into the job's environment by name; Ray keeps a job's runtime env with
the job, so names that look like secrets are refused: give secrets to the cluster's own
environment instead (cluster/README.md, "Security").
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import time

SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_KEY|ACCESS_KEY|PRIVATE", re.IGNORECASE)
ATTEMPTS, PAUSE_S = 10, 3.0  # a fresh head's job agent takes a few seconds to come up ("No available agent")


def entrypoint(config: str, overrides: list[str]) -> str:
    """The job's shell command, each argument quoted."""
    return shlex.join(["python", "-m", "lambda_dpo.cli", "sweep", config, *overrides])


def runtime_env(path: str, pass_env: list[str]) -> dict:
    """The runtime env of the YAML file plus the named variables of this shell (non-secret only)."""
    import yaml

    secret = [name for name in pass_env if SECRET_NAME.search(name)]
    if secret:
        raise SystemExit(f"submit.sh: --pass-env {' '.join(secret)}: looks like a secret, and Ray stores a job's runtime env with the job; "
                         "set it in the cluster's own environment instead (cluster/README.md, Security)")
    with open(path) as handle:
        env = yaml.safe_load(handle) or {}
    variables = dict(env.get("env_vars") or {})
    variables.update({name: os.environ[name] for name in pass_env if name in os.environ})
    env["env_vars"] = variables
    return env


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    address, submission_id, env_file, config, *overrides = argv
    from ray.job_submission import JobSubmissionClient

    env = runtime_env(env_file, os.environ.get("PASS_ENV", "").split())
    command = entrypoint(config, overrides)
    print(f"submitting {submission_id} to {address}: {command}", flush=True)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            JobSubmissionClient(address).submit_job(entrypoint=command, submission_id=submission_id, runtime_env=env)
            return 0
        except Exception as error:  # connection refused, or the agent not up yet
            if attempt == ATTEMPTS:
                print(f"submit.sh: could not submit to {address}: {error}", file=sys.stderr)
                return 1
            time.sleep(PAUSE_S)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
