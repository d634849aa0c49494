package Test::Nginx::Lite;

# The engine of the project's runner for the Test::Nginx::Socket data format.
# A Test::Base subclass (like the real module), so `blocks()`, `plan`, the
# section filters (eval, chomp, ...) and ONLY/SKIP/LAST behave as usual.
# Test::Nginx::Socket (the shim next to this file) inherits from it.
#
# Per block: write nginx.conf, start nginx as our child (or reload it with
# SIGHUP under TEST_NGINX_USE_HUP), send the requests, check the responses and
# the lines nginx logged meanwhile, each check being one Test::More test named
# "<script> <block name> - <what>", as the real Test::Nginx names them.

use Test::Base -base;

use Scalar::Util qw(looks_like_number);
use Test::LongString ();
use Time::HiRes qw(sleep time);
use Digest::MD5 ();
use Digest::SHA ();

use Test::Nginx::Lite::Server qw(
    :settings parse_time expand_env_in_text verbose_log nginx_version
    acquire_run_lock stop_stale_nginx setup_server_root write_user_files
    write_config_file start_nginx stop_nginx reload_nginx nginx_running
    nginx_exit_text note_abandoned_connection mark_logs error_log_lines
    access_log_lines startup_output append_error_log_to
);
use Test::Nginx::Lite::HTTP qw(build_request build_request_packets send_request parse_response);
use Test::Nginx::Lite::TCP qw(start_tcp_server stop_tcp_server);

our @EXPORT = qw(
    run_tests run_test repeat_each no_shuffle no_long_string is_str
    add_block_preprocessor add_cleanup_handler add_response_body_check
    check_accum_error_log bail_out
    workers master_on master_off master_process_enabled no_root_location
    log_level env_to_nginx timeout config_preamble worker_connections
    server_name server_addr server_root html_dir server_port
    server_port_for_client use_hup no_nginx_manager
);

# Take the port / server root lock as soon as a suite loads us: suites often
# start their helper servers (on fixed ports too) before run_tests().
acquire_run_lock();

our $RepeatEach       = 1;
our $NoShuffle        = 0;    # blocks always run in file order
our $NoLongString     = 0;
our $CheckAccumErrLog = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our @BlockPreprocessors;
our @CleanupHandlers;
our @ResponseBodyChecks;

sub repeat_each {
    $RepeatEach = shift if @_;
    return $RepeatEach;
}

sub no_shuffle ()            { $NoShuffle = 1 }
sub no_long_string ()        { $NoLongString = 1 }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }
sub add_cleanup_handler ($)  { unshift @CleanupHandlers, shift }
sub add_response_body_check ($) { push @ResponseBodyChecks, shift }

sub is_str {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    return Test::More::like($got, $expected, $desc) if ref $expected eq 'Regexp';
    return Test::More::is($got, $expected, $desc) if $NoLongString;
    return Test::LongString::is_string($got, $expected, $desc);
}

sub _cleanup {
    $_->() for @CleanupHandlers;
    @CleanupHandlers = ();
    stop_nginx() unless $ENV{TEST_NGINX_NO_CLEAN};
}

sub bail_out {
    my $msg = join '', @_;
    _cleanup();
    Test::More::BAIL_OUT($msg);
}

# ---------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------

sub run_tests () {
    local $SIG{INT}  = sub { _cleanup(); exit 130 };
    local $SIG{TERM} = sub { _cleanup(); exit 143 };

    eval { nginx_version(); acquire_run_lock(); 1 } or bail_out("$@");
    stop_stale_nginx();

    if ($Test::Nginx::Lite::Server::UseHup) {
        master_on();    # a reload needs a master process
    }

    for my $block (blocks()) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value(name => "$0 " . $block->name);
        run_test($block);
    }
    _cleanup();
}

# sections of a block, after $TEST_NGINX_* expansion
sub _expanded {
    my ($block, $section, $ctx, $strict) = @_;
    my $v = $block->$section;
    return _expand_deep($v, $ctx, $strict);
}

sub _expand_deep {
    my ($v, $ctx, $strict) = @_;
    return $v unless defined $v;
    if (ref $v eq 'ARRAY') {
        return [ map { _expand_deep($_, $ctx, $strict) } @$v ];
    }
    if (ref $v eq 'HASH') {
        return { map { $_ => _expand_deep($v->{$_}, $ctx, $strict) } keys %$v };
    }
    return $v if ref $v;
    return expand_env_in_text($v, $ctx->{name}, $ctx->{rand_ports}, $strict);
}

sub _skip_spec {
    my ($block) = @_;
    my $name = $block->name;
    my ($canon) = nginx_version();

    my $cmp = sub {
        my ($op, $a, $b, $c) = @_;
        return 0 unless defined $canon;
        my $v = sprintf '%d.%03d%03d', $a, $b, $c;
        return eval "$canon $op $v";
    };

    if (defined(my $s = $block->skip_nginx)) {
        $s =~ m{^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)\s*(?::\s*(.*?))?\s*$}
            or bail_out("$name - invalid --- skip_nginx spec: $s");
        return ($1, $7 || "nginx version $2 $3.$4.$5") if $cmp->($2, $3, $4, $5);
    }
    if (defined(my $s = $block->skip_nginx2)) {
        $s =~ m{^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)\s*(or|and)\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)\s*(?::\s*(.*?))?\s*$}
            or bail_out("$name - invalid --- skip_nginx2 spec: $s");
        my ($n, $x, $y) = ($1, $cmp->($2, $3, $4, $5), $cmp->($7, $8, $9, $10));
        my $skip = $6 eq 'or' ? ($x || $y) : ($x && $y);
        return ($n, $11 || "nginx version") if $skip;
    }
    if (defined(my $s = $block->skip_eval)) {
        $s =~ m{^\s*(\d+)\s*:\s*(.*)$}s or bail_out("$name - invalid --- skip_eval spec: $s");
        my ($n, $code) = ($1, $2);
        my $skip = eval "package main; $code";
        bail_out("$name - skip_eval - failed to eval \"$code\": $@") if $@;
        return ($n, 'skip_eval') if $skip;
    }
    return;
}

sub run_test {
    my ($block) = @_;
    my $name = $block->name;
    my $ctx = { name => $name, rand_ports => {} };

    my ($nskip, $reason) = _skip_spec($block);
    if (defined $nskip) {
        Test::More->builder->skip("$name - $reason") for 1 .. $nskip * $RepeatEach;
        return;
    }
    if (defined(my $todo = $block->todo)) {
        $todo =~ m{^\s*(\d+)\s*:\s*(.*)$}s or bail_out("$name - invalid --- todo spec: $todo");
        Test::More->builder->todo_skip("$name - $2") for 1 .. $1 * $RepeatEach;
        return;
    }

    my $must_die = $block->must_die;
    my $use_hup = $Test::Nginx::Lite::Server::UseHup && !defined $must_die;

    my %conf;
    my $ok = eval {
        for my $s (qw(config http_config main_config post_main_config)) {
            $conf{$s} = _expanded($block, $s, $ctx, 1);
        }
        1;
    };
    bail_out($@) unless $ok;
    $conf{server_name} = $block->server_name;
    $conf{log_level}   = $block->log_level;
    my $expand_file = sub { expand_env_in_text($_[0], $name, $ctx->{rand_ports}, 1) };

    if (defined $must_die) {
        _run_must_die($block, \%conf, $expand_file, $must_die);
        return;
    }

    my $t0 = time;
    if (!defined $block->config && nginx_running()) {
        # no config: keep the nginx of the previous block, as the real one does
        verbose_log("$name - no --- config: keeping the running nginx");
        write_user_files(scalar $block->user_files, $name, $expand_file);
        mark_logs();
    } else {
        my $started;
        if ($use_hup && nginx_running()) {
            write_user_files(scalar $block->user_files, $name, $expand_file);
            write_config_file(%conf);
            mark_logs();
            $started = reload_nginx();
            if (!$started) {
                verbose_log("$name - reload failed; restarting nginx");
                stop_nginx();
            }
        }
        if (!$started) {
            stop_nginx();
            setup_server_root();
            write_user_files(scalar $block->user_files, $name, $expand_file);
            write_config_file(%conf);
            my $r = start_nginx();
            if (!$r->{started}) {
                my $why = $r->{error} // "exit status " . _status_text($r->{status});
                Test::More::fail("$name - nginx failed to start ($why)");
                Test::More::diag(startup_output());
                stop_nginx();
                return;
            }
        }
    }
    if (defined(my $init = $block->init)) {
        eval "package main; $init";
        bail_out("$name - init failed: $@") if $@;
    }

    for my $rep (0 .. $RepeatEach - 1) {
        write_user_files(scalar $block->user_files, $name, $expand_file) if $rep > 0;
        my $tcp = defined $block->tcp_listen ? _start_tcp($block, $ctx) : undef;
        _run_requests($block, $ctx, $rep);
        _finish_tcp($block, $tcp) if $tcp;
    }

    if (my $total = $ENV{TEST_NGINX_ERROR_LOG}) {
        append_error_log_to($total, $name);
    }
    verbose_log(sprintf "%s - took %.3fs", $name, time - $t0);
}

# --- tcp_listen: a mock server that takes one connection per repetition
sub _start_tcp {
    my ($block, $ctx) = @_;
    my $name = $block->name;
    my $reply = _expand_deep(scalar $block->tcp_reply, $ctx);
    bail_out("$name - no --- tcp_reply specified but --- tcp_listen is specified")
        if !defined $reply && !defined $block->tcp_shutdown;
    my $query_len = $block->tcp_query_len;
    $query_len = length $block->tcp_query if !defined $query_len && defined $block->tcp_query;
    my $srv = eval {
        start_tcp_server(
            target         => _expand_deep(scalar $block->tcp_listen, $ctx, 1),
            reply          => $reply,
            reply_delay    => parse_time(scalar $block->tcp_reply_delay),
            query_len      => $query_len,
            shutdown       => scalar $block->tcp_shutdown,
            shutdown_delay => parse_time(scalar $block->tcp_shutdown_delay),
            no_close       => defined $block->tcp_no_close,
        );
    };
    bail_out("$name - $@") unless $srv;
    return $srv;
}

sub _finish_tcp {
    my ($block, $srv) = @_;
    my $name = $block->name;
    my $got = stop_tcp_server($srv);
    if (defined $block->tcp_query) {
        is_str($got, scalar $block->tcp_query, "$name - tcp_query ok");
    }
    if (defined $block->tcp_query_len) {
        Test::More::is(length $got, scalar $block->tcp_query_len, "$name - TCP query length ok");
    }
}

sub _status_text {
    my ($st) = @_;
    return 'unknown' unless defined $st;
    return 'exec failed' if $st == -1;
    return 'signal ' . ($st & 127) if $st & 127;
    return $st >> 8;
}

sub _run_must_die {
    my ($block, $conf, $expand_file, $must_die) = @_;
    my $name = $block->name;
    stop_nginx();
    setup_server_root();
    write_user_files(scalar $block->user_files, $name, $expand_file);
    write_config_file(%$conf);

    for my $rep (0 .. $RepeatEach - 1) {
        my $r = start_nginx(must_die => 1);
        if ($r->{started}) {
            Test::More::fail("$name - die as expected");
            Test::More::diag("nginx started although the block says --- must_die");
        } elsif (defined $r->{error}) {
            Test::More::fail("$name - die as expected ($r->{error})");
        } elsif ($r->{status} & 127) {
            Test::More::fail("$name - die as expected (nginx killed by signal "
                             . ($r->{status} & 127) . ")");
        } elsif (looks_like_number($must_die)) {
            Test::More::is($r->{status} >> 8, $must_die, "$name - die with the expected exit code");
        } else {
            Test::More::isnt($r->{status}, 0, "$name - die as expected");
        }
        _check_error_log($block, $rep, 0, 0);
        stop_nginx() if $r->{started};
    }
}

# ---------------------------------------------------------------------------
# requests
# ---------------------------------------------------------------------------

# -> list of { packets => [...], heads => [is_head...], n => responses expected }
sub _request_list {
    my ($block, $ctx) = @_;
    my $name = $block->name;
    my $more = _expand_deep(scalar $block->more_headers, $ctx) // '';
    my $hdr_for = sub {
        my ($i) = @_;
        return $more unless ref $more eq 'ARRAY';
        my $h = $more->[$i];
        bail_out("$name - --- more_headers lacks data for request $i") unless defined $h;
        return $h;
    };
    my $is_head = sub { $_[0] =~ /^\s*HEAD\s/ ? 1 : 0 };

    if (defined(my $raw = $block->raw_request)) {
        $raw = _expand_deep($raw, $ctx);
        my @p = ref $raw eq 'ARRAY'
            ? map { ref $_ eq 'HASH' ? {%$_} : { value => $_ } } @$raw
            : ({ value => $raw });
        my $all = join '', map { $_->{value} } @p;
        return ({ packets => \@p, heads => [$is_head->($all)], n => 1 });
    }

    if (defined(my $reqs = $block->pipelined_requests)) {
        bail_out("$name - invalid entries in --- pipelined_requests (need an array)")
            unless ref $reqs eq 'ARRAY';
        $reqs = _expand_deep($reqs, $ctx);
        my ($bytes, @heads) = ('');
        for my $i (0 .. $#$reqs) {
            my $conn = $i == $#$reqs ? 'close' : 'keep-alive';
            my ($r) = build_request($reqs->[$i], $hdr_for->($i), $conn, $name, server_name());
            $bytes .= $r;
            push @heads, $is_head->($reqs->[$i]);
        }
        return ({ packets => [{ value => $bytes }], heads => \@heads, n => scalar @$reqs });
    }

    my $request = $block->request;
    bail_out("$name - no --- request, --- raw_request or --- pipelined_requests") unless defined $request;
    $request = _expand_deep($request, $ctx);
    my @list = ref $request eq 'ARRAY' ? @$request : ($request);
    my @out;
    for my $i (0 .. $#list) {
        my $one = $list[$i];
        my $packets;
        my $text;
        if (ref $one eq 'ARRAY') {
            $packets = build_request_packets($one, $hdr_for->($i), 'close', $name, server_name());
            $text = join '', map { ref $_ eq 'HASH' ? $_->{value} : $_ } @$one;
        } elsif (!ref $one) {
            my ($r) = build_request($one, $hdr_for->($i), 'close', $name, server_name());
            $packets = [{ value => $r }];
            $text = $one;
        } else {
            bail_out("$name - a request must be a string or an array of packets");
        }
        push @out, { packets => $packets, heads => [$is_head->($text)], n => 1 };
    }
    return @out;
}

sub _run_requests {
    my ($block, $ctx, $rep) = @_;
    my $name = $block->name;

    my @reqs = eval { _request_list($block, $ctx) };
    bail_out($@) if $@;

    my $total = 0;
    $total += $_->{n} for @reqs;
    my $need_array = defined $block->pipelined_requests || $total > 1;
    my $timeout = parse_time(scalar $block->timeout) // timeout();
    my $wait = parse_time(scalar $block->wait);
    my $idx = 0;

    for my $req (@reqs) {
        my $r = send_request(
            packets      => $req->{packets},
            addr         => server_addr(),
            port         => server_port_for_client(),
            timeout      => $timeout,
            middle_delay => parse_time(scalar $block->raw_request_middle_delay),
            shutdown     => scalar $block->shutdown,
            server_alive => \&nginx_running,
        );
        if ($r->{error}) {
            Test::More::fail("$name - $r->{error}");
        }
        if (($r->{error} || $r->{raw} eq '') && !nginx_running()) {
            # a crash: say so, with the end of the logs
            Test::More::diag("$name - nginx is gone (" . (nginx_exit_text() // 'unknown') . "):\n"
                             . startup_output());
        }
        if ($r->{timed_out}) {
            note_abandoned_connection();
            Test::More::fail("ERROR: client socket timed out - $name") unless defined $block->abort;
        }
        verbose_log("$name - response: [$r->{raw}]") if $Test::Nginx::Lite::Server::Verbose;

        my $raw = $r->{raw};
        for my $k (0 .. $req->{n} - 1) {
            if (!defined $block->ignore_response) {
                my $res = parse_response($raw, $req->{heads}[$k]);
                $raw = $res->{left} // '';
                if ($res->{error}) {
                    Test::More::fail("$name - $res->{error}");
                }
                if ($res->{truncated} && !$r->{timed_out}) {
                    warn "WARNING: $name - response body truncated: $res->{truncated}\n";
                }
                if ($k == $req->{n} - 1 && length $raw && !$req->{heads}[$k]) {
                    (my $extra = $raw) =~ s/([\0-\037\177-\377])/sprintf '\\x{%02x}', ord $1/ge;
                    warn "WARNING: $name - unexpected extra bytes after the response: \"$extra\"\n";
                }
                _check_response($block, $ctx, $res, $idx, $rep, $need_array);
            }
            if ($idx < $total - 1) {
                sleep $wait if $wait;
                _check_error_log($block, $rep, $need_array, 1);
                _check_access_log($block, $rep) unless defined $block->ignore_response;
            }
            $idx++;
        }
    }

    sleep $wait if $wait;
    _check_error_log($block, $rep, $need_array, 1);
    _check_access_log($block, $rep) unless defined $block->ignore_response;
}

# the value for request $idx of a section that may hold one value per request
sub _indexed {
    my ($block, $value, $idx, $need_array) = @_;
    if (ref $value eq 'ARRAY') {
        return $value->[$idx] if $need_array;
        return $value->[0];
    }
    if ($need_array) {
        bail_out($block->name . " - You asked for many requests, the expected results should be arrays as well.");
    }
    return $value;
}

sub _summary {
    my ($s) = @_;
    return '' unless defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\s+/ /g;
    $s = substr($s, 0, 77) . '...' if length $s > 80;
    return $s;
}

sub _check_response {
    my ($block, $ctx, $res, $idx, $rep, $need_array) = @_;
    my $name = $block->name;
    my $code = $res->{code} // '';
    my $port = server_port();
    my $cport = server_port_for_client();
    my $subst = sub {
        my $v = shift;
        return $v if !defined $v || ref $v;
        $v =~ s/\$ServerPortForClient\b/$cport/g;
        $v =~ s/\$ServerPort\b/$port/g;
        return $v;
    };

    # status
    if (defined $block->error_code_like) {
        my $pat = _indexed($block, scalar $block->error_code_like, $idx, $need_array);
        Test::More::like($code, qr/$pat/sm, "$name - status code ok");
    } elsif (defined $block->error_code) {
        my $want = _indexed($block, scalar $block->error_code, $idx, $need_array);
        Test::More::is($code, $want, "$name - status code ok");
    } else {
        Test::More::is($code, 200, "$name - status code ok");
    }

    # raw headers
    if (defined $block->raw_response_headers_like) {
        my $pat = _indexed($block, _expanded($block, 'raw_response_headers_like', $ctx), $idx, $need_array);
        Test::More::like($res->{raw_headers}, qr/$pat/s, "$name - raw resp headers like");
    }
    if (defined $block->raw_response_headers_unlike) {
        my $pat = _indexed($block, _expanded($block, 'raw_response_headers_unlike', $ctx), $idx, $need_array);
        Test::More::unlike($res->{raw_headers}, qr/$pat/s, "$name - raw resp headers unlike");
    }

    # headers
    if (defined $block->response_headers) {
        my $spec = _indexed($block, _expanded($block, 'response_headers', $ctx), $idx, $need_array);
        for my $h (_parse_header_spec($spec)) {
            my ($key, $val) = @$h;
            if (!defined $val) {
                Test::More::unlike($res->{raw_headers}, qr/^\s*\Q$key\E\s*:/mi,
                                   "$name - header $key not present in the raw headers");
                next;
            }
            my $got = $res->{headers}->header($key) // '';
            Test::More::is($got, $subst->($val), "$name - header $key ok");
        }
    } elsif (defined $block->response_headers_like) {
        my $spec = _indexed($block, _expanded($block, 'response_headers_like', $ctx), $idx, $need_array);
        for my $h (_parse_header_spec($spec)) {
            my ($key, $val) = @$h;
            my $got = $res->{headers}->header($key) // '';
            $val //= '';
            Test::More::like($got, qr/^$val$/, "$name - header $key like ok");
        }
    }

    # body
    _filter_body($block, $res, $idx);
    my $content = $res->{content};
    if (defined $block->response_body) {
        my $want = $subst->(_indexed($block, _expanded($block, 'response_body', $ctx), $idx, $need_array));
        my $what = "(repeated req $rep, req $idx)";
        if (ref $want) {
            Test::More::like($content, $want, "$name - response_body - like $what");
        } else {
            is_str($content, $want, "$name - response_body - response is expected $what");
        }
    } elsif (defined $block->response_body_like || defined $block->response_body_unlike) {
        my $like = defined $block->response_body_like;
        my $sec = $like ? 'response_body_like' : 'response_body_unlike';
        my $pat = $subst->(_indexed($block, _expanded($block, $sec, $ctx), $idx, $need_array));
        my $desc = "$name - $sec - response is expected (" . _summary($content) . ")";
        if ($like) {
            Test::More::like($content, qr/$pat/s, $desc);
        } else {
            Test::More::unlike($content, qr/$pat/s, $desc);
        }
    }

    $_->($block, $content, $idx, $rep, 0) for @ResponseBodyChecks;
}

# "Name: value" -> [Name, value]; "!Name" -> [Name, undef].  Later lines for
# the same name win (the real Test::Nginx keeps them in a hash).
sub _parse_header_spec {
    my ($spec) = @_;
    my (@order, %val);
    for my $line (split /\n/, $spec // '') {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '';
        my ($key, $v);
        if ($line =~ s/^!\s*//) {
            $key = $line;
        } else {
            ($key, $v) = split /\s*:\s*/, $line, 2;
            $v //= '';
        }
        push @order, $key unless exists $val{$key};
        $val{$key} = $v;
    }
    return map { [$_, $val{$_}] } @order;
}

my %BodyFilters = (
    md5_hex  => \&Digest::MD5::md5_hex,
    sha1_hex => \&Digest::SHA::sha1_hex,
    uc       => sub { uc $_[0] },
    lc       => sub { lc $_[0] },
    ucfirst  => sub { ucfirst $_[0] },
    lcfirst  => sub { lcfirst $_[0] },
    length   => sub { length $_[0] },
);

sub _filter_body {
    my ($block, $res, $idx) = @_;
    my $filters = $block->response_body_filters;
    return unless defined $filters;
    my $name = $block->name;
    if (!ref $filters) {
        $filters =~ s/^\s+|\s+$//g;
        $filters = [split /\s+/, $filters];
    } elsif (ref $filters ne 'ARRAY') {
        $filters = [$filters];
    }
    $filters = $filters->[$idx] // bail_out("$name - no response_body_filters for request $idx")
        if ref $filters->[0] eq 'ARRAY';
    for my $f (ref $filters eq 'ARRAY' ? @$filters : $filters) {
        my $code = ref $f eq 'CODE' ? $f : $BodyFilters{$f}
            // bail_out("$name - unknown response_body_filters filter \"$f\"");
        $res->{content} = $code->($res->{content});
    }
}

# ---------------------------------------------------------------------------
# logs
# ---------------------------------------------------------------------------

sub _patterns {
    my ($v) = @_;
    return () unless defined $v;
    return ($v) if ref $v eq 'Regexp';
    return grep { defined } @$v if ref $v eq 'ARRAY';
    chomp $v;
    return grep { $_ ne '' } split /\n+/, $v;
}

sub _pat_matches {
    my ($pat, $line) = @_;
    return ref $pat ? $line =~ $pat : index($line, $pat) >= 0;
}

sub _fmt {
    my ($s) = @_;
    $s = "$s";
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

sub _mentions {
    my ($v, $needle) = @_;
    return 0 unless defined $v;
    return scalar grep { index("$_", $needle) >= 0 } (ref $v eq 'ARRAY' ? @$v : $v);
}

sub _check_error_log {
    my ($block, $rep, $need_array, $may_wait) = @_;
    my $name = $block->name;
    my $ctx = { name => $name, rand_ports => {} };

    my $error_log    = _expanded($block, 'error_log', $ctx);
    my $no_error_log = _expanded($block, 'no_error_log', $ctx);
    my $grep         = $block->grep_error_log;

    if (defined $block->grep_error_log_out && !defined $grep) {
        bail_out("$name - No --- grep_error_log defined but --- grep_error_log_out is defined");
    }

    # messages logged in the log phase or by another server block of the same
    # nginx can land a moment after the response
    my $checks = defined $error_log || defined $no_error_log || defined $grep;
    sleep $Test::Nginx::Lite::Server::TestNginxSleep if $checks && $may_wait;

    # only what was logged since the last check, unless check_accum_error_log()
    my @lines = $CheckAccumErrLog ? error_log_lines(all => 1) : error_log_lines();

    if (defined $grep) {
        my $pat = ref $grep eq 'ARRAY' ? $grep->[$rep] : $grep;
        my $want = $block->grep_error_log_out;
        bail_out("$name - No --- grep_error_log_out defined but --- grep_error_log is defined")
            unless defined $want;
        $want = $want->[$rep] if ref $want eq 'ARRAY';
        my $got = '';
        for my $line (@lines) {
            if (ref $pat ? $line =~ $pat : $line =~ /\Q$pat\E/) {
                my $m = $&;
                $got .= "$m\n" unless $m =~ /\n/;
            }
        }
        if (ref $want eq 'Regexp') {
            Test::More::like($got, $want, "$name - grep_error_log_out (req $rep)");
        } else {
            is_str($got, $want, "$name - grep_error_log_out (req $rep)");
        }
    }

    for my $pat (_patterns($error_log)) {
        my ($hit) = grep { _pat_matches($pat, $_) } @lines;
        if (defined $hit) {
            Test::More::pass("$name - pattern \"" . _fmt($pat) . "\" matches a line in error.log (req $rep)");
        } else {
            Test::More::fail("$name - pattern \"" . _fmt($pat) . "\" should match a line in error.log (req $rep)");
            _diag_log_lines(\@lines);
        }
    }

    for my $pat (_patterns($no_error_log)) {
        my ($hit) = grep { _pat_matches($pat, $_) } @lines;
        if (defined $hit) {
            Test::More::fail("$name - pattern \"" . _fmt($pat) . "\" should not match any line in error.log"
                             . " but matches line \"" . _fmt($hit) . "\" (req $rep)");
        } else {
            Test::More::pass("$name - pattern \"" . _fmt($pat) . "\" does not match a line in error.log (req $rep)");
        }
    }

    # like the real one: warn about alerts the block did not ask about
    for my $level (qw(alert crit emerg)) {
        next if _mentions($error_log, "[$level") || _mentions($no_error_log, "[$level");
        next if defined $block->must_die && $level eq 'emerg';
        for my $line (grep { /\[$level\]/ } @lines) {
            warn "WARNING: $name - " . _fmt($line) . "\n";
        }
    }
    for my $line (grep { /\bAssertion .*?failed\b/ } @lines) {
        Test::More::fail("$name - " . _fmt($line));
    }
}

# after a missed error_log pattern: what was logged (without debug noise)
my $ShownLog = '';
sub _diag_log_lines {
    my ($lines) = @_;
    my $key = join '', @$lines;
    return if $key eq $ShownLog;    # once per set of lines
    $ShownLog = $key;
    my @l = grep { m{^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(?!debug)} } @$lines;
    my $n = @l;
    @l = @l[-15 .. -1] if @l > 15;
    Test::More::diag(sprintf "%d lines were logged, %d of them above debug level%s", scalar @$lines,
                     $n, @l ? "; the last ones:\n" . join('', @l) : '');
}

sub _check_access_log {
    my ($block, $rep) = @_;
    my $name = $block->name;
    my $ctx = { name => $name, rand_ports => {} };
    my $want = _expanded($block, 'access_log', $ctx);
    my $dont = _expanded($block, 'no_access_log', $ctx);
    return unless defined $want || defined $dont;
    sleep $Test::Nginx::Lite::Server::TestNginxSleep;
    my @lines = access_log_lines();
    for my $pat (_patterns($want)) {
        my ($hit) = grep { _pat_matches($pat, $_) } @lines;
        if (defined $hit) {
            Test::More::pass("$name - pattern \"" . _fmt($pat) . "\" matches a line in access.log (req $rep)");
        } else {
            Test::More::fail("$name - pattern \"" . _fmt($pat) . "\" should match a line in access.log (req $rep)");
        }
    }
    for my $pat (_patterns($dont)) {
        my ($hit) = grep { _pat_matches($pat, $_) } @lines;
        if (defined $hit) {
            Test::More::fail("$name - pattern \"" . _fmt($pat) . "\" should not match any line in access.log"
                             . " but matches line \"" . _fmt($hit) . "\" (req $rep)");
        } else {
            Test::More::pass("$name - pattern \"" . _fmt($pat) . "\" does not match a line in access.log (req $rep)");
        }
    }
}

1;
