# Tests of the project's Test::Nginx::Socket runner (t/lib).
#
# Each fixture under t/runner/ (*.suite, so `prove -r t/` does not run them
# itself) is run as a separate test script, with its own port and server
# root, and its TAP output and exit status are checked: passing blocks must
# pass, and broken expectations must FAIL.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use File::Temp qw(tempdir);
use Test::More;
use Time::HiRes qw(time sleep);

my $root = abs_path(dirname(__FILE__) . '/..');
my $lib  = "$root/t/lib";
my $fix  = "$root/t/runner";

my $nginx = $ENV{TEST_NGINX_BINARY}
    || (grep { -x } map { "$_/nginx" } split(/:/, $ENV{PATH} // ''), '/usr/sbin')[0];
plan skip_all => 'nginx not found (set TEST_NGINX_BINARY)' unless $nginx && -x $nginx;

# This file tests the project's runner: when the real Test::Nginx is the
# one the suites load (another Test/Nginx/Socket.pm on @INC, which the
# shim hands over to), there is nothing here to test, unless
# TEST_NGINX_BUNDLED=1 asks for the project's runner anyway.
my $bundled_forced = $ENV{TEST_NGINX_BUNDLED};
my ($real) = grep { -f $_ && abs_path($_) ne abs_path("$lib/Test/Nginx/Socket.pm") }
             map { "$_/Test/Nginx/Socket.pm" } grep { !ref } @INC;
plan skip_all => "the real Test::Nginx is loaded ($real): this file tests "
                 . "the project's runner in t/lib (TEST_NGINX_BUNDLED=1 to run it)"
    if $real && !$bundled_forced;

# the fixtures get their own port and server root
my $port     = $ENV{TEST_NGINX_RUNNER_PORT} || 1990;
my $servroot = "$root/t/servroot_runner";
delete $ENV{$_} for grep { /^TEST_NGINX_/ && $_ ne 'TEST_NGINX_BINARY' } keys %ENV;
$ENV{TEST_NGINX_BINARY}   = $nginx;
$ENV{TEST_NGINX_BUNDLED}  = 1 if $bundled_forced;
$ENV{TEST_NGINX_PORT}     = $port;
$ENV{TEST_NGINX_SERVROOT} = $servroot;
my $pid_file = "$servroot/logs/nginx.pid";

# hold the runner's lock on that port and server root for the whole file, so
# that a concurrent run of this file waits; the fixtures (our children) see
# TEST_NGINX_LOCKED and do not take it again
require lib;
lib->import($lib);
require Test::Nginx::Lite::Server;
Test::Nginx::Lite::Server::acquire_run_lock();

# Run one fixture as its own test script: perl -I t/lib FILE (or prove).
sub run_script {
    my ($cmd, %env) = @_;
    my $dir = tempdir(CLEANUP => 1);
    my $t0 = time;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        $ENV{$_} = $env{$_} for keys %env;
        chdir $root or die;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$dir/out" or die;
        open STDERR, '>', "$dir/err" or die;
        exec @$cmd or die "exec @$cmd: $!";
    }
    waitpid $pid, 0;
    my %r = (status => $? >> 8, signal => $? & 127, elapsed => time - $t0);
    for my $f (qw(out err)) {
        open my $fh, '<', "$dir/$f" or die;
        local $/;
        $r{$f} = <$fh> // '';
    }
    for my $line (split /\n/, $r{out}) {
        $r{plan} = $1 if $line =~ /^1\.\.(\d+)/;
        next unless $line =~ /^(not )?ok (\d+)\b(.*)$/;
        my ($not, $num, $rest) = ($1, $2, $3);
        my $directive = $rest =~ /(?<!\\)#\s*(skip|TODO)\b/i ? lc $1 : '';
        (my $desc = $rest) =~ s/^\s*-\s*//;
        $desc =~ s/\s*(?<!\\)#\s*(?:skip|TODO)\b.*$//i;
        push @{ $r{tests} }, { ok => !$not, num => $num, desc => $desc, directive => $directive };
    }
    $r{tests} //= [];
    $r{failed} = [ grep { !$_->{ok} } @{ $r{tests} } ];
    return \%r;
}

sub run_suite {
    my ($name, %env) = @_;
    return run_script([$^X, '-I', $lib, "$fix/$name"], %env);
}

sub nginx_left_running {
    return undef unless -f $pid_file;
    open my $fh, '<', $pid_file or return undef;
    my $pid = <$fh> // return undef;
    chomp $pid;
    return undef unless $pid =~ /^\d+$/;
    return alive($pid) ? $pid : undef;
}

# running, not a zombie: the runner's own check
sub alive {
    return Test::Nginx::Lite::Server::_alive(@_);
}

sub port_open {
    require IO::Socket::INET;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 1);
    return $s ? 1 : 0;
}

sub show_output {
    my ($r) = @_;
    diag("exit status $r->{status}\n--- stdout\n$r->{out}\n--- stderr\n$r->{err}");
}

# --------------------------------------------------------------------------
subtest 'request building and response parsing' => sub {
    require Test::Nginx::Lite::HTTP;
    Test::Nginx::Lite::HTTP->import(qw(build_request parse_response));

    my ($req) = build_request("  # a comment\nGET /a", '', 'close', 'x');
    is($req, "GET /a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
       'defaults: HTTP/1.1, Host, Connection: close; comment lines skipped');
    ($req) = build_request("POST /p\n  body text \n", "X-A: 1\nHost: h", 'keep-alive', 'x');
    is($req, "POST /p HTTP/1.1\r\nConnection: keep-alive\r\nX-A: 1\r\nHost: h\r\n"
             . "Content-Length: 9\r\n\r\nbody text", 'body trimmed, Content-Length added, Host from more_headers');
    ($req) = build_request("POST /p\nab\n", "Transfer-Encoding: chunked", 'close', 'x');
    unlike($req, qr/Content-Length/, 'no Content-Length for a chunked request');
    ($req) = build_request("GET", '', 'close', 'x');
    like($req, qr{^GET / HTTP/1\.1\r\n}, 'URI defaults to /');

    my $r = parse_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nX-A: 2\r\n\r\n"
                           . "3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\nLEFT");
    is($r->{code}, 200, 'status code');
    is($r->{content}, 'abcde', 'chunked body decoded (extensions, trailers)');
    is($r->{left}, 'LEFT', 'bytes after the last chunk are left over');
    is($r->{headers}->header('X-A'), '1, 2', 'repeated headers joined');
    $r = parse_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab");
    like($r->{error} // '', qr/not enough octets/, 'truncated chunk is an error');
    $r = parse_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n");
    is($r->{error}, 'no last chunk found', 'missing last chunk is an error');
    $r = parse_response("HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nabHTTP/1.1 200 OK\r\n");
    is_deeply([@$r{qw(code content left)}], [404, 'ab', "HTTP/1.1 200 OK\r\n"], 'Content-Length body, rest left over');
    $r = parse_response("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nNEXT", 1);
    is_deeply([@$r{qw(content left)}], ['', 'NEXT'], 'HEAD response has no body');
    $r = parse_response("HTTP/1.0 200 OK\r\n\r\nuntil close");
    is($r->{content}, 'until close', 'no length: body until the connection closes');
};

subtest 'a suite whose blocks all pass' => sub {
    my $r = run_suite('pass.suite');
    is($r->{status}, 0, 'exit status 0') or show_output($r);
    is(scalar @{ $r->{failed} }, 0, 'no failed test');
    ok(@{ $r->{tests} } >= 50, 'ran ' . scalar(@{ $r->{tests} }) . ' tests');
    is($r->{plan}, scalar @{ $r->{tests} }, 'no_plan: the plan printed at the end matches');
    like($r->{out}, qr/^ok \d+ - \S*pass\.suite TEST 1: return and a body - status code ok$/m,
         'test names: "<script> <block name> - status code ok"');
    like($r->{out}, qr/^ok \d+ - .*TEST 8: pipelined.* - response_body - response is expected \(repeated req 0, req 2\)$/m,
         'pipelined requests: three responses checked');
    is(scalar(grep { $_->{directive} =~ /skip/i } @{ $r->{tests} }), 2, 'skip_nginx skipped 2 tests');
    ok(!nginx_left_running(), 'nginx is not left running');
    ok(!port_open(), 'nothing listens on the port afterwards');
};

subtest 'the same suite with TEST_NGINX_USE_HUP=1 reloads one nginx' => sub {
    my $r = run_suite('pass.suite', TEST_NGINX_USE_HUP => 1, TEST_NGINX_VERBOSE => 1);
    is($r->{status}, 0, 'exit status 0') or show_output($r);
    is(scalar @{ $r->{failed} }, 0, 'no failed test');
    my @starts = $r->{err} =~ /\[runner\] starting: /g;
    my @reloads = $r->{err} =~ /\[runner\] nginx \d+ reloaded/g;
    is(scalar @starts, 1, 'nginx started once');
    ok(@reloads >= 10, 'and reloaded with SIGHUP for the other blocks (' . scalar(@reloads) . ')');
    ok(!nginx_left_running(), 'nginx is not left running');
};

subtest 'explicit plan, repeat_each, blocks(), must_die, master + workers' => sub {
    my $r = run_suite('plan.suite');
    is($r->{status}, 0, 'exit status 0') or show_output($r);
    is($r->{plan}, 20, 'plan computed from repeat_each() and blocks()');
    is(scalar @{ $r->{tests} }, 20, '20 tests ran');
    is(scalar @{ $r->{failed} }, 0, 'no failed test');
    is(scalar(() = $r->{out} =~ /TEST 3: .* - die as expected/g), 2, 'must_die checked once per repetition');
};

subtest 'broken expectations fail' => sub {
    my $r = run_suite('fail.suite');
    isnt($r->{status}, 0, 'exit status is not 0');
    # block title => the check that must fail (and only that one)
    my @expected = (
        [ 'TEST 1: wrong body',            qr/- response_body - response is expected/ ],
        [ 'TEST 2: wrong status',          qr/- status code ok$/ ],
        [ 'TEST 3: missing error_log line', qr/- pattern "this line is never logged" should match a line in error\.log/ ],
        [ 'TEST 4: no_error_log line present', qr/- pattern "\[error\]" should not match any line in error\.log but matches line .*open\(\)/ ],
        [ 'TEST 5: must_die on a good config', qr/- die as expected$/ ],
        [ 'TEST 6: wrong header value',    qr/- header X-A ok$/ ],
        [ 'TEST 7: header present though it must be absent', qr/- header X-A not present in the raw headers$/ ],
        [ 'TEST 8: response_body_like mismatch', qr/- response_body_like - response is expected \(abc\)$/ ],
        [ 'TEST 9: client timeout without abort', qr/^ERROR: client socket timed out/ ],
        [ 'TEST 10: nginx fails to start without must_die', qr/- nginx failed to start \(exit status 1\)$/ ],
        [ 'TEST 11: second of two requests has the wrong body', qr/- response_body - response is expected \(repeated req 0, req 1\)$/ ],
        [ 'TEST 12: wrong grep_error_log_out', qr/- grep_error_log_out \(req 0\)$/ ],
    );
    my @failed = @{ $r->{failed} };
    for my $e (@expected) {
        my ($title, $re) = @$e;
        my @hits = grep { index($_->{desc}, $title) >= 0 } @failed;
        is(scalar @hits, 1, "$title: exactly one failed test")
            and like($hits[0]{desc}, $re, "$title: the expected check failed");
    }
    is(scalar @failed, scalar @expected, 'no other test failed') or show_output($r);
    like($r->{err}, qr/unknown directive "no_such_directive"/, "nginx's startup error is shown");
    like($r->{err}, qr/got: 'actual\n# '\n#\s+expected: 'expected\n# '/, 'a body mismatch shows got and expected');
    ok(!nginx_left_running(), 'nginx is not left running');

    my ($prove) = grep { -x } map { "$_/prove" } split(/:/, $ENV{PATH} // ''), dirname($^X);
    SKIP: {
        skip 'prove not found', 2 unless $prove;
        my $p = run_script([$^X, $prove, '-I', $lib, "$fix/fail.suite"]);
        isnt($p->{status}, 0, 'prove -I t/lib fails on it');
        like($p->{out}, qr/^Result: FAIL/m, 'prove reports Result: FAIL');
    }
};

subtest 'cost of a block' => sub {
    my $r = run_suite('speed.suite');
    is($r->{status}, 0, 'exit status 0') or show_output($r);
    is(scalar @{ $r->{tests} }, 60, '20 blocks, 3 checks each');
    my $per_block = $r->{elapsed} / 20;
    diag(sprintf 'speed.suite: %.2f s for 20 blocks (%.0f ms per block, perl start-up included)',
         $r->{elapsed}, $per_block * 1000);
    ok($per_block < 0.3, sprintf 'under 0.3 s per block (%.3f s)', $per_block);
};

subtest 'the generated nginx.conf and the nginx process' => sub {
    my $r = run_suite('conf.suite');
    is($r->{status}, 0, 'exit status 0') or show_output($r);
    open my $fh, '<', "$servroot/conf/nginx.conf" or die "no nginx.conf: $!";
    my $conf = do { local $/; <$fh> };
    like($conf, qr/^daemon off;$/m, 'daemon off (nginx runs as our child)');
    like($conf, qr/^master_process off;$/m, 'master_process off by default');
    like($conf, qr/^worker_processes\s+1;$/m, 'one worker by default');
    like($conf, qr/^error_log \Q$servroot\E\/logs\/error\.log debug;$/m, 'error_log at debug level');
    like($conf, qr/^pid\s+\Q$servroot\E\/logs\/nginx\.pid;$/m, 'pid file in the server root');
    if ($> == 0) {
        like($conf, qr/^user root;$/m, 'user root; when run as root');
    } else {
        unlike($conf, qr/^user /m, 'no user directive when not root');
    }
    like($conf, qr/^\s+listen\s+127\.0\.0\.1:$port;$/m, 'listens on 127.0.0.1:TEST_NGINX_PORT');
    like($conf, qr/^\s+client_body_temp_path \Q$servroot\E\/client_body_temp;$/m, 'temp paths in the server root');
    like($conf, qr/accept_mutex off;\s+worker_connections\s+\d+;/, 'events block');
    like($conf, qr/main_config marker.*http \{.*http_config marker.*server \{.*config marker.*location \/ \{/s,
         'sections land in main, http and server contexts, before the root location');
    ok(!nginx_left_running(), 'nginx was stopped at the end');
};

subtest 'TEST_NGINX_LOAD_MODULES' => sub {
    my $r = run_suite('loadmod.suite', TEST_NGINX_LOAD_MODULES => '/nonexistent/no_such_module.so');
    is($r->{status}, 0, 'must_die block passes: nginx refused the module') or show_output($r);
    open my $fh, '<', "$servroot/conf/nginx.conf" or die;
    my $conf = do { local $/; <$fh> };
    like($conf, qr/\A[^{]*^load_module \/nonexistent\/no_such_module\.so;$/m, 'load_module at the top');
};

subtest 'TEST_NGINX_NO_CLEAN leaves nginx running; the next run replaces it' => sub {
    my $r = run_suite('conf.suite', TEST_NGINX_NO_CLEAN => 1);
    is($r->{status}, 0, 'exit status 0') or show_output($r);
    my $left = nginx_left_running();
    ok($left, 'nginx still runs after the test script exited');
    ok(port_open(), 'and still listens');
    $r = run_suite('conf.suite');
    is($r->{status}, 0, 'a new run passes') or show_output($r);
    ok(!($left && alive($left)), 'the left-over nginx was stopped');
    kill 'KILL', $left if $left && alive($left);    # never leave it behind

};

subtest 'an installed Test::Nginx::Socket wins over t/lib' => sub {
    my $fake = tempdir(CLEANUP => 1);
    make_path("$fake/Test/Nginx");
    open my $fh, '>', "$fake/Test/Nginx/Socket.pm" or die;
    print $fh <<'EOF';
package Test::Nginx::Socket;
sub import { print "1..1\nok 1 - the installed Test::Nginx::Socket was loaded\n"; exit 0 }
1;
EOF
    close $fh;
    my $r = run_script([$^X, '-I', $lib, '-I', $fake, "$fix/shim.suite"]);
    like($r->{out}, qr/the installed Test::Nginx::Socket was loaded/,
         'with t/lib first on @INC, the other Test::Nginx::Socket is used') or show_output($r);
    $r = run_script([$^X, '-I', $lib, '-I', $fake, "$fix/shim.suite"], TEST_NGINX_BUNDLED => 1);
    like($r->{out}, qr/^ok \d+ - .*the project runner ran this block - status code ok$/m,
         'TEST_NGINX_BUNDLED=1 forces the project runner') or show_output($r);
    $r = run_suite('shim.suite');
    is($r->{status}, 0, 'without another one, the project runner runs the suite') or show_output($r);
};

remove_tree($servroot) unless $ENV{TEST_NGINX_RUNNER_KEEP};

done_testing();
