# TAP for the shell tests (agent/test-agent.sh, examples/test-examples.sh),
# sourced:   . "$(dirname "$0")/../t/tap.sh"
#
#   ok STATUS NAME         passes when STATUS is 0
#   is GOT WANT NAME       string equality
#   like GOT REGEX NAME    bash regex ([[ =~ ]])
#   pass NAME / fail NAME  a test that passed / failed
#   diag TEXT              "# " before each line
#   wait_for SECONDS CMD...  run CMD until it succeeds (every 50 ms); 1 if
#                          it never did
#   skip_all REASON        the "1..0 # SKIP" plan, and exit 0
#   done_testing           prints the plan "1..N"; the exit status is 0
#                          only if every test passed (call it last)

TAP_N=0
TAP_FAILED=0

pass() { TAP_N=$((TAP_N + 1)); echo "ok $TAP_N - $1"; }
fail() { TAP_N=$((TAP_N + 1)); TAP_FAILED=$((TAP_FAILED + 1)); echo "not ok $TAP_N - $1"; }
diag() { sed 's/^/# /' <<< "$1"; }

ok() {
    if [ "$1" = 0 ]; then pass "$2"; else fail "$2"; fi
}

is() {
    if [ "$1" = "$2" ]; then
        pass "$3"
    else
        fail "$3"; diag "got:      '$1'"; diag "expected: '$2'"
    fi
}

like() {
    if [[ $1 =~ $2 ]]; then
        pass "$3"
    else
        fail "$3"; diag "got:  '$1'"; diag "want: /$2/"
    fi
}

wait_for() {
    local end=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $end ] && return 1
        sleep 0.05
    done
}

skip_all() {
    echo "1..0 # SKIP $1"
    exit 0
}

done_testing() {
    echo "1..$TAP_N"
    [ $TAP_FAILED = 0 ]
}
