#!/usr/bin/env bash
# Stage functions are called indirectly (by name, through `stage`), which shellcheck cannot see:
# shellcheck disable=SC2317
# The test suite behind `make test` (and so .ci/run): each stage timed, every stage run even when one fails,
# a summary at the end, exit status 1 when any stage failed. Lab test containers are removed on exit, whatever
# happened. Run one stage with `tests/run.sh lint|sanity|build|unit|molecule [scenario ...]`.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
BIN=$ROOT/.venv/bin
export PATH=$BIN:$PATH
export ANSIBLE_CONFIG=$ROOT/ansible.cfg
export CONTAINERS_CONF=$ROOT/lab/containers.conf
export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-0}
export PY_COLORS=0
LOGDIR=$ROOT/tests/output/logs
mkdir -p "$LOGDIR"
MOLECULE_JOBS=${MOLECULE_JOBS:-2}

declare -a RESULTS=()
failed=0

stage() {  # stage NAME COMMAND...: run, time, record
  local name=$1; shift
  local start end rc
  start=$(date +%s)
  echo "=== $name"
  "$@"
  rc=$?
  end=$(date +%s)
  local verdict=FAILED
  if [ "$rc" -eq 0 ]; then verdict=ok; else failed=1; fi
  RESULTS+=("$(printf '%-10s %-6s %5ss' "$name" "$verdict" "$((end - start))")")
  return 0
}

SCENARIOS_RUN=()
cleanup() {
  # Only the hosts of the scenarios this run started (platforms are named strata-<scenario>-<host>), so a
  # concurrent run of other scenarios is left alone.
  local scenario
  local -a ids
  for scenario in "${SCENARIOS_RUN[@]}"; do
    mapfile -t ids < <(podman ps -aq --filter label=owner=molecule --filter name="^strata-${scenario}-" 2>/dev/null)
    if [ ${#ids[@]} -gt 0 ]; then
      podman rm -f -t 5 "${ids[@]}" >/dev/null 2>&1
    fi
  done
  return 0
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

lint() {
  ruff check .
  local r1=$?
  ansible-lint --offline
  local r2=$?
  [ "$r1" -eq 0 ] && [ "$r2" -eq 0 ]
}

sanity() {
  # ansible-test's --venv mode downloads get-pip from a host these machines cannot reach, so sanity runs with
  # --local in a venv of its own (.cache/sanity-venv: the pinned ansible-core plus what ansible-test installs).
  local tree core venv=$ROOT/.cache/sanity-venv
  core=$(grep -E '^ansible-core==' requirements.txt)
  if [ ! -x "$venv/bin/ansible-test" ] || ! "$venv/bin/pip" freeze 2>/dev/null | grep -qx "$core"; then
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --upgrade pip \
           && "$venv/bin/pip" install --quiet "$core"; }; then
      echo "sanity: could not create $venv"
      return 1
    fi
  fi
  local pip_version
  pip_version=$("$venv/bin/python" -c 'from ansible_test._internal.python_requirements import get_venv_packages as g; import inspect, re; print(re.search(r"pip=.([0-9.]+)", inspect.getsource(g)).group(1))')
  mkdir -p ~/.ansible/test/cache
  cp tests/sanity/get_pip_offline.py ~/.ansible/test/cache/get_pip_"${pip_version//./_}".py
  tree=$(mktemp -d /var/tmp/strata-sanity.XXXXXX)
  mkdir -p "$tree/ansible_collections/strata/deploy"
  git ls-files -z --cached --others --exclude-standard \
    | rsync -a --from0 --files-from=- ./ "$tree/ansible_collections/strata/deploy/"
  (cd "$tree/ansible_collections/strata/deploy" && git init -q && git add -A >/dev/null \
    && PATH=$venv/bin:$PATH "$venv/bin/ansible-test" sanity --local --python 3.11 --requirements --color no)
  local rc=$?
  rm -rf "$tree"
  return "$rc"
}

build() {
  # The collection tarball builds, installs, and ansible-doc reads its content from the installed copy.
  local out rc
  out=$(mktemp -d /var/tmp/strata-build.XXXXXX)
  ansible-galaxy collection build --force --output-path "$out" . >/dev/null \
    && ansible-galaxy collection install --force --offline --no-deps -p "$out/install" "$out"/strata-deploy-*.tar.gz >/dev/null \
    && ANSIBLE_COLLECTIONS_PATH=$out/install ansible-doc -t role -l strata.deploy | tee "$out/roles.txt" \
    && grep -q '^strata.deploy.common' "$out/roles.txt" \
    && ANSIBLE_COLLECTIONS_PATH=$out/install ansible-doc -t role strata.deploy.common >/dev/null
  rc=$?
  [ "$rc" -eq 0 ] && echo "built $(basename "$out"/strata-deploy-*.tar.gz); installed; ansible-doc reads its roles"
  rm -rf "$out"
  return "$rc"
}

unit() {
  # Three workers, one test file each at a time (--dist loadfile keeps a file's module fixtures - real HAProxy,
  # Prometheus, emulators - in one process): most of the time goes to tests waiting on real daemons, so this
  # roughly halves the stage on 2 cores (807 s -> 360 s measured).
  PYTHONPATH=$ROOT/.cache/collections pytest tests/unit -q -p no:cacheprovider -n 3 --dist loadfile
  local rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here (tests/unit must hold real tests)"
  fi
  return "$rc"
}

molecule_one() {  # molecule_one SCENARIO: its own log; prints one line
  local scenario=$1 start rc
  start=$(date +%s)
  molecule test -s "$scenario" >"$LOGDIR/molecule-$scenario.log" 2>&1
  rc=$?
  local verdict=FAILED
  [ "$rc" -eq 0 ] && verdict=ok
  printf 'molecule %-24s %-6s %5ss  (log: tests/output/logs/molecule-%s.log)\n' "$scenario" \
    "$verdict" "$(($(date +%s) - start))" "$scenario"
  [ "$rc" -eq 0 ] || tail -n 60 "$LOGDIR/molecule-$scenario.log"
  return "$rc"
}

molecule_all() {
  STRATA_LAB_IMAGE=$(python3 lab/labctl.py image-ref) || return 1
  export STRATA_LAB_IMAGE
  local scenarios=("$@")
  if [ ${#scenarios[@]} -eq 0 ]; then
    # Longest first (by the last CI run's times), so that the slots finish close together; a scenario not in
    # the list is new and runs first, as it may be the longest.
    local known=(traffic postgresql monitoring pgbackrest redis baseline haproxy nginx app common) found=()
    mapfile -t found < <(find extensions/molecule -mindepth 2 -maxdepth 2 -name molecule.yml \
      -printf '%h\n' | xargs -n1 basename | sort)
    local s
    for s in "${found[@]}"; do [[ " ${known[*]} " == *" $s "* ]] || scenarios+=("$s"); done
    for s in "${known[@]}"; do [[ " ${found[*]} " == *" $s "* ]] && scenarios+=("$s"); done
  fi
  SCENARIOS_RUN=("${scenarios[@]}")
  echo "scenarios (${#scenarios[@]}, $MOLECULE_JOBS at a time): ${scenarios[*]}"
  export -f molecule_one
  export LOGDIR
  printf '%s\n' "${scenarios[@]}" | xargs -P "$MOLECULE_JOBS" -I{} bash -c 'molecule_one "$@"' _ {}
}

case "${1:-all}" in
  lint) stage lint lint ;;
  sanity) stage sanity sanity ;;
  unit) stage unit unit ;;
  build) stage build build ;;
  molecule) shift; stage molecule molecule_all "$@" ;;
  all)
    stage lint lint
    stage sanity sanity
    stage build build
    stage unit unit
    stage molecule molecule_all
    ;;
  *) echo "usage: tests/run.sh [lint|sanity|build|unit|molecule [scenario ...]]" >&2; exit 2 ;;
esac

echo
echo "=== summary"
printf '%s\n' "${RESULTS[@]}"
exit $failed
