#!/usr/bin/perl
#
# End to end, as users run it: nginx with the module (a direct child,
# daemon off), a real redis-server, three Node chat backends of
# examples/chat-backend and real WebSocket clients of examples/ws-client:
# affinity of every room, full delivery, nginx reload during live
# WebSockets, Redis restart during live traffic, a killed backend's rooms
# moving whole.  The test is t/e2e/e2e.js, which prints TAP.
#
# Ports (127.0.0.1): nginx RA_TEST_E2E_PORT (19870) and the next three for
# the backends, redis-server RA_TEST_E2E_REDIS_PORT (16396).

use strict;
use warnings;
use FindBin;

if (system('command -v node >/dev/null 2>&1') != 0) {
    print "1..0 # SKIP node is not installed\n";
    exit 0;
}

exec 'node', "$FindBin::Bin/e2e/e2e.js" or die "cannot run node: $!\n";
