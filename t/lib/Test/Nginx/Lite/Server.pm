package Test::Nginx::Lite::Server;

# The nginx side of the project's Test::Nginx::Socket runner: file-level
# settings, the server root, nginx.conf generation, and the nginx process
# itself (started as our direct child in the foreground, reaped with waitpid),
# plus incremental reading of its logs.

use strict;
use warnings;

use Exporter 'import';
use Carp qw(croak);
use Cwd ();
use Fcntl qw(:flock O_RDWR O_CREAT);
use File::Path qw(make_path remove_tree);
use File::Spec ();
use IO::Socket::INET ();
use POSIX qw(:sys_wait_h SIGQUIT SIGTERM SIGKILL SIGHUP);
use Time::HiRes qw(sleep time);

our @EXPORT_OK = qw(
    workers master_on master_off master_process_enabled no_root_location
    log_level env_to_nginx timeout config_preamble worker_connections
    server_name server_addr server_root html_dir server_port
    server_port_for_client use_hup no_nginx_manager
    parse_time expand_env_in_text verbose_log
    nginx_version setup_server_root write_user_files write_config_file
    start_nginx stop_nginx reload_nginx nginx_running nginx_pid nginx_exit_text note_abandoned_connection
    stop_stale_nginx acquire_run_lock lock_files
    mark_logs error_log_lines peek_error_log_lines access_log_lines
    startup_output append_error_log_to
);

our %EXPORT_TAGS = (
    settings => [qw(
        workers master_on master_off master_process_enabled no_root_location
        log_level env_to_nginx timeout config_preamble worker_connections
        server_name server_addr server_root html_dir server_port
        server_port_for_client use_hup no_nginx_manager
    )],
);

# ---------------------------------------------------------------------------
# Settings (file level, same names and defaults as the real Test::Nginx)
# ---------------------------------------------------------------------------

our $Verbose           = $ENV{TEST_NGINX_VERBOSE};
our $ServerAddr        = '127.0.0.1';
our $ServerName        = 'localhost';
our $ServerPort        = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
our $Workers           = 1;
our $WorkerConnections = 1024;
our $LogLevel          = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $NoRootLocation    = 0;
our $ConfigPreamble    = '';
our @EnvToNginx;
our $LoadModules       = $ENV{TEST_NGINX_LOAD_MODULES};
our $UseHup            = $ENV{TEST_NGINX_USE_HUP};
our $WorkerUser        = $ENV{TEST_NGINX_WORKER_USER};
our $Timeout           = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $TestNginxSleep    = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $NginxBinary       = $ENV{TEST_NGINX_BINARY} || _default_binary();

if ($ENV{TEST_NGINX_RANDOMIZE}) {
    $ServerPort = _free_port({}) or die "cannot find a free port for TEST_NGINX_RANDOMIZE\n";
    $ServerPortForClient = $ServerPort;
}

our $ServRoot = $ENV{TEST_NGINX_SERVROOT}
    || ($ENV{TEST_NGINX_RANDOMIZE} ? "t/servroot_$ServerPort" : 't/servroot');
$ServRoot = File::Spec->rel2abs($ServRoot);
$ServRoot =~ s{/+$}{};

our $LogDir     = "$ServRoot/logs";
our $HtmlDir    = "$ServRoot/html";
our $ConfDir    = "$ServRoot/conf";
our $ConfFile   = "$ConfDir/nginx.conf";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $PidFile    = "$LogDir/nginx.pid";
our $StderrFile = "$LogDir/nginx.stderr";

# the $TEST_NGINX_* names suites use, as the real Test::Nginx sets them
$ENV{TEST_NGINX_SERVER_PORT} = $ServerPort;
$ENV{TEST_NGINX_PORT}        //= $ServerPort;
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;
$ENV{TEST_NGINX_SERVROOT}    //= $ServRoot;
$ENV{TEST_NGINX_HTML_DIR}    //= $HtmlDir;
$ENV{TEST_NGINX_CONF_DIR}    //= $ConfDir;
$ENV{TEST_NGINX_LOG_DIR}     //= $LogDir;

sub _default_binary {
    for my $dir (split /:/, $ENV{PATH} // '') {
        next if $dir eq '';
        return "$dir/nginx" if -f "$dir/nginx" && -x _;
    }
    return '/usr/sbin/nginx';
}

sub verbose_log { warn "# [runner] @_\n" if $Verbose }

sub workers {
    $Workers = shift if @_;
    return $Workers;
}

sub worker_connections {
    $WorkerConnections = shift if @_;
    return $WorkerConnections;
}

sub master_on  () { $MasterProcessEnabled = 'on' }
sub master_off () { $MasterProcessEnabled = 'off' }

sub master_process_enabled {
    $MasterProcessEnabled = $_[0] ? 'on' : 'off' if @_;
    return $MasterProcessEnabled;
}

sub no_root_location () { $NoRootLocation = 1 }

sub log_level {
    $LogLevel = shift if @_;
    return $LogLevel;
}

sub timeout {
    $Timeout = shift if @_;
    return $Timeout;
}

sub config_preamble { $ConfigPreamble = shift // '' }

sub server_name {
    $ServerName = shift if @_;
    return $ServerName;
}

sub server_addr {
    $ServerAddr = shift if @_;
    return $ServerAddr;
}

sub server_port {
    if (@_) {
        $ServerPort = shift;
        $ServerPortForClient = $ServerPort unless $ENV{TEST_NGINX_CLIENT_PORT};
        $ENV{TEST_NGINX_SERVER_PORT} = $ServerPort;
    }
    return $ServerPort;
}

sub server_port_for_client {
    $ServerPortForClient = shift if @_;
    return $ServerPortForClient;
}

sub server_root () { $ServRoot }
sub html_dir ()    { $HtmlDir }
sub use_hup ()     { $UseHup = 1 }

sub no_nginx_manager () {
    warn "WARNING: no_nginx_manager() is not supported by the project runner; ignored\n";
}

sub env_to_nginx {
    croak "env_to_nginx: no arguments specified" unless @_;
    for my $v (@_) {
        croak "env_to_nginx: bad argument value: $v" if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

# "100ms", "2s", "0.5" -> seconds
sub parse_time {
    my $t = shift;
    return undef unless defined $t;
    $t =~ s/^\s+|\s+$//g;
    return $1 / 1000 if $t =~ /^([\d.]+)\s*ms$/;
    return $1 if $t =~ /^([\d.]+)\s*s?$/;
    return $t;
}

# ---------------------------------------------------------------------------
# $TEST_NGINX_* expansion
# ---------------------------------------------------------------------------

sub _free_port {
    my ($used) = @_;
    for (1 .. 1000) {
        my $port = 20000 + int rand 40000;
        next if $used->{$port} || $port == $ServerPort;
        my $s = IO::Socket::INET->new(LocalAddr => $ServerAddr, LocalPort => $port,
                                      Proto => 'tcp', Listen => 1, ReuseAddr => 1)
            or next;
        close $s;
        return $port;
    }
    return undef;
}

# Replace $TEST_NGINX_NAME by $ENV{TEST_NGINX_NAME}.  $TEST_NGINX_RAND_PORT_N
# gives a free port, the same one for the whole block ($rand_ports).  With
# $strict, an undefined variable is an error (config sections, as the real
# Test::Nginx does); otherwise it is left as it is.
sub expand_env_in_text {
    my ($text, $name, $rand_ports, $strict) = @_;
    return $text if !defined $text || ref $text;
    $rand_ports //= {};
    $text =~ s{\$(TEST_NGINX_[A-Z0-9_]+)}{
        my $var = $1;
        my $val;
        if ($var =~ /^TEST_NGINX_RAND_PORT_\d+$/) {
            $rand_ports->{$var} //= _free_port({ map { $_ => 1 } values %$rand_ports })
                // die "$name - cannot find a free port for \$$var\n";
            $val = $rand_ports->{$var};
        } elsif (defined $ENV{$var}) {
            $val = $ENV{$var};
        } elsif ($strict) {
            die "$name - No environment $var defined.\n";
        } else {
            $val = "\$$var";
        }
        $val;
    }ge;
    return $text;
}

# ---------------------------------------------------------------------------
# nginx binary
# ---------------------------------------------------------------------------

my %VersionInfo;

# ($canonical_version, $raw_version, $nginx_V_output); canonical is 1.022001
sub nginx_version {
    unless (%VersionInfo) {
        my $out = `"$NginxBinary" -V 2>&1`;
        die "cannot run $NginxBinary -V: " . ($out // $!) . "\n" if !defined $out || $? != 0;
        my ($raw, $canon);
        if ($out =~ m{(?:nginx|openresty)[^/\s]*/(\d+)\.(\d+)\.(\d+)}) {
            $raw = "$1.$2.$3";
            $canon = sprintf "%d.%03d%03d", $1, $2, $3;
        }
        %VersionInfo = (canon => $canon, raw => $raw, out => $out);
    }
    return @VersionInfo{qw(canon raw out)};
}

# ---------------------------------------------------------------------------
# server root, user files, nginx.conf
# ---------------------------------------------------------------------------

sub setup_server_root {
    # only ever remove the directories the runner itself creates
    remove_tree($ConfDir, $HtmlDir, $LogDir, glob("$ServRoot/*_temp"));
    make_path($ServRoot, $ConfDir, $HtmlDir, $LogDir);
    for my $d ($ConfDir, $HtmlDir, $LogDir) {
        die "cannot create $d\n" unless -d $d;
    }
    open my $fh, '>', "$HtmlDir/index.html" or die "cannot write index.html: $!\n";
    print $fh '<html><head><title>It works!</title></head><body>It works!</body></html>';
    close $fh;
    _reset_log_positions();
}

# $files: either the text form (">>> name [touch-date]" followed by the body)
# or an array of [name, body, date].
sub write_user_files {
    my ($files, $name, $expand) = @_;
    return unless defined $files && $files ne '';
    my @list;
    if (!ref $files) {
        my ($fname, $body, $date);
        for my $line (split /^/m, $files) {
            if ($line =~ /^>>> (\S+)(?:\s+(.+?))?\s*$/) {
                push @list, [$fname, $body, $date] if defined $fname;
                ($fname, $date, $body) = ($1, $2, undef);
            } else {
                $body .= $line;
            }
        }
        push @list, [$fname, $body, $date] if defined $fname;
    } elsif (ref $files eq 'ARRAY') {
        @list = @$files;
    } else {
        die "$name - user_files must be a string or an array\n";
    }
    for my $f (@list) {
        my ($fname, $body, $date) = @$f;
        $body //= '';
        $body = $expand->($body) if $expand;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        (my $dir = $path) =~ s{/[^/]*$}{};
        make_path($dir) unless -d $dir;
        open my $fh, '>', $path or die "$name - cannot write $path: $!\n";
        binmode $fh;
        print $fh $body;
        close $fh;
        if ($date) {
            local $ENV{TZ} = 'GMT';
            system('touch', '-t', $date, $path) == 0
                or die "$name - touch -t $date $path failed\n";
        }
    }
}

# %s: main_config http_config config post_main_config server_name log_level
sub write_config_file {
    my (%s) = @_;
    $s{$_} //= '' for qw(main_config http_config config post_main_config);
    my $http_config = $s{http_config} // '';
    my $log_level   = $s{log_level} // $LogLevel;
    my $server_name = $s{server_name} // $ServerName;
    $server_name =~ s/\\/\\\\/g;
    $server_name =~ s/'/\\'/g;

    my $top = '';
    for my $m (grep { length } split /\s+/, $LoadModules // '') {
        $m = File::Spec->rel2abs($m) unless $m =~ m{^/};
        $top .= "load_module $m;\n";
    }

    my $user = '';
    if (defined $WorkerUser) {
        $user = "user $WorkerUser;\n";
    } elsif ($> == 0) {
        # workers of a root master would otherwise run as "nobody" and
        # could not write to the server root
        $user = "user root;\n";
    }

    my $env = join '', map { my $v = $_; $v = "'$v'" if $v =~ /\s/; "env $v;\n" } @EnvToNginx;

    # temp paths under the server root, unless the suite sets them itself
    my (undef, undef, $V) = nginx_version();
    my $temp = '';
    for my $t (['client_body', undef], ['proxy', 'proxy'], ['fastcgi', 'fastcgi'],
               ['uwsgi', 'uwsgi'], ['scgi', 'scgi'])
    {
        my ($dir, $module) = @$t;
        my $directive = "${dir}_temp_path";
        next if $module && $V =~ /--without-http_${module}_module/;
        next if $http_config =~ /\b\Q$directive\E\b/;
        $temp .= "    $directive $ServRoot/${dir}_temp;\n";
    }

    my $root_location = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_

    my $conf = <<"_EOC_";
# generated by the project's Test::Nginx::Socket runner (t/lib)
$top
worker_processes  $Workers;
daemon off;
master_process $MasterProcessEnabled;
error_log $ErrLogFile $log_level;
pid       $PidFile;
$user$env
$s{main_config}

http {
    access_log $AccLogFile;

    default_type text/plain;
    keepalive_timeout  68;

$temp
$http_config

    server {
        listen          $ServerAddr:$ServerPort;
        server_name     '$server_name';

        client_max_body_size 30M;

        # Begin preamble config...
$ConfigPreamble
        # End preamble config...

        # Begin test case config...
$s{config}
        # End test case config.

$root_location    }
}

$s{post_main_config}

events {
    accept_mutex off;
    worker_connections  $WorkerConnections;
}
_EOC_

    open my $fh, '>', $ConfFile or die "cannot write $ConfFile: $!\n";
    print $fh $conf;
    close $fh;
}

# ---------------------------------------------------------------------------
# the nginx process
# ---------------------------------------------------------------------------

my $NginxPid;      # our direct child (the master, or the single process)
my $NginxStatus;   # wait status once reaped

sub nginx_pid { $NginxPid }

# how the last nginx ended: "exit code N", "signal N" (or undef)
sub nginx_exit_text {
    my $st = $NginxStatus;
    return undef unless defined $st;
    return 'exec failed' if $st == -1;
    return 'signal ' . ($st & 127) . ($st & 128 ? ' (core dumped)' : '') if $st & 127;
    return 'exit code ' . ($st >> 8);
}

sub nginx_running {
    return 0 unless $NginxPid;
    return 1 if waitpid($NginxPid, WNOHANG) == 0;
    $NginxStatus = $?;
    undef $NginxPid;
    return 0;
}

# Does something accept connections on this port?  A refused connect costs
# next to nothing; a successful one is only made when the port is taken.
sub _port_listening {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => $ServerAddr, PeerPort => $port,
                                  Proto => 'tcp', Timeout => 1);
    return 0 unless $s;
    close $s;
    return 1;
}

# nginx writes its pid file after it opened (bound and listened on) all its
# listening sockets, and before it serves: with "daemon off" the pid in it is
# our child's.  Much cheaper to poll than the port itself.
sub _pid_file_is {
    my ($pid) = @_;
    open my $fh, '<', $PidFile or return 0;
    my $line = <$fh> // return 0;
    return $line =~ /^\s*(\d+)/ && $1 == $pid;
}

sub _proc_cmdline {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/cmdline" or return '';
    local $/;
    my $c = <$fh> // '';
    $c =~ s/\0+/ /g;
    $c =~ s/\s+$//;
    return $c;
}

sub _ppid {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return undef;
    my $line = <$fh> // return undef;
    return $line =~ /^\d+ \(.*\) \S (\d+) / ? $1 : undef;
}

# running (not a zombie nobody reaps)?
sub _alive {
    my ($pid) = @_;
    return 0 unless kill 0, $pid;
    open my $fh, '<', "/proc/$pid/stat" or return 1;
    my $line = <$fh> // return 0;
    return $line =~ /^\d+ \(.*\) Z / ? 0 : 1;
}

sub _children_of {
    my ($ppid) = @_;
    if (open my $fh, '<', "/proc/$ppid/task/$ppid/children") {
        local $/;
        return split ' ', (<$fh> // '');
    }
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // next;
        push @kids, $1 if $line =~ /^(\d+) \(.*\) \S (\d+) / && $2 == $ppid;
    }
    return @kids;
}

# ---------------------------------------------------------------------------
# one test run per port and server root at a time
# ---------------------------------------------------------------------------

# Several people (or prove -j) may run suites on one machine: runs that
# would share the port or the server root wait for each other instead of
# stealing each other's nginx.  The locks are flock()s, released by the
# kernel when the test script exits however it exits; nginx does not
# inherit them.  A child of a process that holds the locks (TEST_NGINX_LOCKED
# names the port) does not take them again.
my @Locks;

sub lock_files {
    (my $root = $ServRoot) =~ s{[^A-Za-z0-9_.-]}{_}g;
    my $tmp = File::Spec->tmpdir;
    return ("$tmp/test-nginx-port-$ServerPort.lock", "$tmp/test-nginx-root-$root.lock");
}

sub acquire_run_lock {
    return if @Locks;
    return if ($ENV{TEST_NGINX_LOCKED} // '') eq $ServerPort;
    my $timeout = $ENV{TEST_NGINX_LOCK_TIMEOUT} // 900;
    for my $file (lock_files()) {
        # shared by every user of the machine: world-writable, or read-only
        # if another user created it (flock works on either)
        my $fh;
        if (sysopen $fh, $file, O_RDWR | O_CREAT, 0666) {
            chmod 0666, $file if -o $file;
        } elsif (!open $fh, '<', $file) {
            warn "WARNING: cannot open the lock file $file ($!); not locking\n";
            next;
        }
        if (!flock $fh, LOCK_EX | LOCK_NB) {
            my $holder = '';
            if (open my $in, '<', $file) { local $/; $holder = <$in> // '' }
            $holder =~ s/\s+$//;
            warn "# waiting for another test run to finish with port $ServerPort / $ServRoot"
                . ($holder ? " ($holder)" : '') . "\n";
            my $deadline = time + $timeout;
            until (flock $fh, LOCK_EX | LOCK_NB) {
                die "gave up waiting for $file after ${timeout}s\n" if time > $deadline;
                sleep 0.1;
            }
        }
        if (-w $file) {
            truncate $fh, 0;
            syswrite $fh, "pid $$: $0\n";
        }
        push @Locks, $fh;
    }
    $ENV{TEST_NGINX_LOCKED} = $ServerPort;
}

# A previous run left nginx running (TEST_NGINX_NO_CLEAN, or a killed test
# script): stop the nginx recorded in our own pid file, as the real
# Test::Nginx does, so it does not hold the port.
sub stop_stale_nginx {
    return unless -f $PidFile;
    open my $fh, '<', $PidFile or return;
    my $pid = <$fh>;
    close $fh;
    return unless defined $pid && $pid =~ /^\s*(\d+)\s*$/;
    $pid = $1;
    return if $NginxPid && $pid == $NginxPid;
    return unless _alive($pid) && _proc_cmdline($pid) =~ m{^(?:\S*/)?nginx\b};
    # only an orphan: the nginx of a live test run (a perl script) stays
    my $ppid = _ppid($pid) // return;
    return if $ppid != 1 && _proc_cmdline($ppid) =~ /\b(?:perl|prove)\b/;
    verbose_log("stopping stale nginx $pid from $PidFile");
    kill SIGQUIT, $pid;
    my $deadline = time + $Timeout;
    sleep 0.005 while _alive($pid) && time < $deadline;
    kill SIGKILL, $pid if _alive($pid);
    sleep 0.005 while _port_listening($ServerPort) && time < $deadline;
}

# Start nginx in the foreground as our child and wait until it listens on the
# server port, or exits.  Returns a hash:
#   started => 1                    it listens (pid in nginx_pid())
#   started => 0, status => $?      it exited (status is the wait status)
#   started => 0, error => "..."    could not even try
# With must_die, a start is only believed after it survived a short grace
# period (an init_process failure makes nginx exit after it listened).
sub start_nginx {
    my (%opt) = @_;
    die "nginx is already running\n" if nginx_running();

    if (_port_listening($ServerPort)) {
        my $deadline = time + 1;
        sleep 0.01 while _port_listening($ServerPort) && time < $deadline;
        return { started => 0, error => "port $ServerPort is already in use by another process" }
            if _port_listening($ServerPort);
    }

    return { started => 0, error => "cannot execute $NginxBinary" } unless -x $NginxBinary;

    open my $errfh, '>>', $StderrFile or return { started => 0, error => "cannot open $StderrFile: $!" };

    my @cmd = ($NginxBinary, '-p', "$ServRoot/", '-c', 'conf/nginx.conf');
    verbose_log("starting: @cmd");

    my $pid = fork;
    return { started => 0, error => "fork failed: $!" } unless defined $pid;

    if ($pid == 0) {
        # child: stdin from /dev/null, stdout+stderr to logs/nginx.stderr, so
        # that nginx never holds the TAP pipe of prove open
        open STDIN, '<', '/dev/null';
        open STDOUT, '>&', $errfh;
        open STDERR, '>&', $errfh;
        { no warnings "exec"; exec { $cmd[0] } @cmd; }
        print STDERR "exec $cmd[0] failed: $!\n";
        POSIX::_exit(127);
    }
    close $errfh;

    $NginxPid = $pid;
    undef $NginxStatus;

    my $start_timeout = $opt{timeout} // 10;
    my $deadline = time + $start_timeout;
    my $step = 0.001;
    while (1) {
        if (!nginx_running()) {
            verbose_log("nginx exited at startup, status $NginxStatus");
            return { started => 0, status => $NginxStatus };
        }
        last if _pid_file_is($pid);
        if (time > $deadline) {
            stop_nginx();
            return { started => 0, error => "nginx did not listen on port $ServerPort within ${start_timeout}s" };
        }
        sleep $step;
        $step = 0.005 if ($step *= 1.5) > 0.005;
    }

    if ($opt{must_die}) {
        my $grace = time + 0.2;
        while (time < $grace) {
            return { started => 0, status => $NginxStatus } if !nginx_running();
            sleep 0.005;
        }
    }

    verbose_log("nginx $pid is listening on $ServerAddr:$ServerPort");
    return { started => 1 };
}

# Wait up to $secs for our child $pid to exit (and reap it).  With $resend,
# send that signal again every 20 ms: a signal that lands while nginx is
# still initializing only sets a flag, and nginx then sleeps in epoll_wait()
# until the next event; a second signal wakes it up.
sub _wait_gone {
    my ($pid, $secs, $resend) = @_;
    my $start = time;
    my $deadline = $start + $secs;
    my $next_signal = $start + 0.02;
    my $step = 0.0005;
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        return 1 if $r == $pid || $r == -1;
        my $now = time;
        return 0 if $now >= $deadline;
        if ($resend && $now >= $next_signal) {
            kill $resend, $pid;
            $next_signal = $now + 0.02;
        }
        sleep $step;
        $step = 0.005 if ($step *= 1.5) > 0.005;
    }
}

# A client connection was abandoned (timeout): a graceful stop could wait
# for that request, so the next stop gives nginx little time to quit.
my $Abandoned = 0;
sub note_abandoned_connection { $Abandoned = 1 }

# Stop our nginx: QUIT (graceful), then TERM, then KILL; always reaped.
sub stop_nginx {
    return unless $NginxPid;
    my $pid = $NginxPid;
    verbose_log("stopping nginx $pid");
    my $abandoned = $Abandoned;
    $Abandoned = 0;
    my $grace = $ENV{TEST_NGINX_QUIT_TIMEOUT} // ($abandoned ? 0.1 : 1);
    kill SIGQUIT, $pid;
    my $gone = _wait_gone($pid, $grace, SIGQUIT);
    if (!$gone) {
        warn "WARNING: nginx $pid did not quit within ${grace}s; sending TERM\n" unless $abandoned;
        kill SIGTERM, $pid;
        $gone = _wait_gone($pid, $Timeout, SIGTERM);
    }
    if (!$gone) {
        warn "WARNING: nginx $pid did not terminate; killing it\n";
        my @kids = _children_of($pid);
        kill SIGKILL, $pid, @kids;
        waitpid($pid, 0);
    }
    $NginxStatus = $?;
    undef $NginxPid;
}

# Reload the running nginx (master on) with SIGHUP after the caller wrote the
# new nginx.conf, and wait until the new generation of workers serves and the
# old workers are gone or shutting down (they closed their listening sockets
# before saying so).  Returns 1 on success, 0 if the reload failed.
sub reload_nginx {
    my (%opt) = @_;
    return 0 unless nginx_running();
    my $pid = $NginxPid;
    my %old = map { $_ => 1 } _children_of($pid);
    verbose_log("reloading nginx $pid with SIGHUP");
    kill SIGHUP, $pid or return 0;

    my $deadline = time + ($opt{timeout} // 10);
    my $step = 0.001;
    while (time < $deadline) {
        return 0 unless nginx_running();
        my (@new, @old_active);
        for my $kid (_children_of($pid)) {
            my $cmd = _proc_cmdline($kid);
            next unless $cmd =~ /worker process/;
            next if $cmd =~ /shutting down/;
            if ($old{$kid}) { push @old_active, $kid } else { push @new, $kid }
        }
        if (@new >= $Workers && !@old_active) {
            verbose_log("nginx $pid reloaded: workers @new");
            return 1;
        }
        if (grep { /\[emerg\]/ } peek_error_log_lines()) {
            verbose_log("nginx $pid failed to reload");
            return 0;
        }
        sleep $step;
        $step = 0.005 if ($step *= 1.5) > 0.005;
    }
    warn "WARNING: nginx $pid did not finish reloading in time\n";
    return 0;
}

# ---------------------------------------------------------------------------
# logs, read incrementally
# ---------------------------------------------------------------------------

my %LogPos;

sub _reset_log_positions { %LogPos = () }

sub _read_from {
    my ($file, $advance) = @_;
    open my $fh, '<', $file or return ();
    my $pos = $LogPos{$file} // 0;
    $pos = 0 if $pos > -s $fh;    # file was recreated
    seek $fh, $pos, 0;
    my @lines = <$fh>;
    # keep a partial last line for the next read
    if (@lines && $lines[-1] !~ /\n\z/) {
        pop @lines;
    }
    if ($advance) {
        my $n = 0;
        $n += length for @lines;
        $LogPos{$file} = $pos + $n;
    }
    return @lines;
}

# Mark the current end of the logs: later reads return only newer lines.
sub mark_logs {
    for my $f ($StderrFile, $ErrLogFile, $AccLogFile) {
        $LogPos{$f} = -e $f ? -s _ : 0;
    }
}

# New lines of nginx's startup stderr and of error.log since the last read.
#   keep => 1   do not advance the read position
#   all  => 1   everything since the server root was set up
sub error_log_lines {
    my (%o) = @_;
    if ($o{all}) {
        my %saved = %LogPos;
        $LogPos{$_} = 0 for $StderrFile, $ErrLogFile;
        my @lines = (_read_from($StderrFile, 0), _read_from($ErrLogFile, 0));
        %LogPos = %saved;
        return @lines;
    }
    return (_read_from($StderrFile, !$o{keep}), _read_from($ErrLogFile, !$o{keep}));
}

sub peek_error_log_lines { error_log_lines(keep => 1) }

sub access_log_lines { _read_from($AccLogFile, 1) }

# whole stderr capture + tail of error.log, for diagnostics
sub startup_output {
    my $out = '';
    for my $f ($StderrFile, $ErrLogFile) {
        open my $fh, '<', $f or next;
        my @l = <$fh>;
        @l = @l[-20 .. -1] if @l > 20;
        $out .= join '', @l;
    }
    return $out;
}

sub append_error_log_to {
    my ($target, $title) = @_;
    return unless -s $ErrLogFile;
    open my $in, '<', $ErrLogFile or return;
    open my $out, '>>', $target or die "cannot append to $target: $!\n";
    print $out "\n=== $title\n";
    print $out $_ while <$in>;
    close $out;
}

my $OwnerPid = $$;

END {
    local $?;
    if ($$ == $OwnerPid && $NginxPid && !$ENV{TEST_NGINX_NO_CLEAN}) {
        stop_nginx();
    }
}

1;
