# One subscriber per nginx instance: when its worker is killed (kill -9),
# another worker takes the role within about a second; a reload hands it
# to the new workers without "open socket left" alerts.
#
# Plain Test::More, not the Test::Nginx format: a killed worker drops the
# client connection it holds, so the requests here are retried, which the
# block format cannot express.

use strict;
use warnings;

use Test::More;
use HTTP::Tiny;
use File::Path qw(make_path remove_tree);
use Time::HiRes qw(sleep time);
use JSON::PP ();

use lib 't/helpers';
use RoomAffinity;

my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $modules = $ENV{TEST_NGINX_LOAD_MODULES} || '';
my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 7;
my $root = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-failover';

RoomAffinity::start_control(redis => 1);

remove_tree($root);
make_path("$root/conf", "$root/logs");

my $load = join '', map { "load_module $_;\n" } split ' ', $modules;

open my $fh, '>', "$root/conf/nginx.conf" or die $!;
print $fh <<"END";
$load
master_process on;
worker_processes 2;
daemon off;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    room_affinity_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};
    upstream chat {
        room_affinity \$arg_room zone=fail:1m;
        server 127.0.0.1:$ENV{TEST_NGINX_B1_PORT};
        server 127.0.0.1:$ENV{TEST_NGINX_B2_PORT};
    }
    server { listen 127.0.0.1:$ENV{TEST_NGINX_B1_PORT}; return 200 "b1\\n"; }
    server { listen 127.0.0.1:$ENV{TEST_NGINX_B2_PORT}; return 200 "b2\\n"; }
    server {
        listen 127.0.0.1:$port;
        location / { proxy_pass http://chat; }
        location = /status { room_affinity_status; }
    }
}
END
close $fh;

my $pid = fork();
die "fork: $!" unless defined $pid;

if ($pid == 0) {
    open STDERR, '>', "$root/logs/stderr.log";
    exec $nginx, '-p', "$root/", '-c', 'conf/nginx.conf' or exit 1;
}

END { if ($pid) { kill 'QUIT', $pid; waitpid $pid, 0 } }

my $http = HTTP::Tiny->new(timeout => 2);

# the status JSON, decoded (undef while nginx does not answer)
sub status {
    my $r = $http->get("http://127.0.0.1:$port/status");
    return undef unless $r->{success};
    return eval { JSON::PP->new->decode($r->{content}) };
}

# polls the status until the check holds; returns the seconds it took
sub wait_for {
    my ($check, $limit) = @_;
    my $start = time;
    while (time - $start < $limit) {
        my $s = status();
        return time - $start if $s && $check->($s);
        sleep 0.02;
    }
    return undef;
}

# the pid of the worker that holds the subscriber link, 0 if none
sub subscriber {
    my ($s) = @_;
    my $redis = $s ? $s->{redis} : undef;
    return $redis && $redis->{connected} ? $redis->{subscriber_pid} || 0 : 0;
}

ok(defined wait_for(sub { subscriber($_[0]) }, 5), 'subscribed at start');

my $first = subscriber(status());
ok($first, "subscriber is worker $first");

kill 'KILL', $first;

my $took = wait_for(sub { my $p = subscriber($_[0]); $p && $p != $first },
                    5);
ok(defined $took, 'another worker subscribed after kill -9');
cmp_ok($took // 99, '<', 1.5, sprintf 'takeover within about a second '
       . '(%.2f s)', $took // 99);

my $second = subscriber(status());
isnt($second, $first, "the new subscriber is worker $second");

# the new subscriber applies reports and nginx proxies
RoomAffinity::redis_command($ENV{TEST_NGINX_REDIS_PORT}, 'PUBLISH',
    'signaling', qq({"url":"ws://127.0.0.1:$ENV{TEST_NGINX_B1_PORT}",)
                 . qq("connections":4242}));
ok(defined wait_for(sub { RoomAffinity::json_diff($_[0], { upstreams => {
       chat => { backends => { RoomAffinity::b(1, { report => {
           connections => 4242 } }) } } } }) eq '' }, 2),
   'a report published after the takeover is applied');

my $r = $http->get("http://127.0.0.1:$port/?room=after");
like($r->{content} // '', qr/^b[12]$/, 'proxying works after the takeover');

# reload: the old workers give the role up, a new worker takes it
kill 'HUP', $pid;

$took = wait_for(sub { my $p = subscriber($_[0]);
                       $p && $p != $first && $p != $second }, 5);
ok(defined $took, 'a new worker subscribes after the reload');

sleep 0.5;

open my $log, '<', "$root/logs/error.log" or die $!;
my @log = <$log>;
close $log;

ok((grep { /room_affinity: this worker subscribes to redis .*\(taken over\)/ }
    @log), 'the error log says the role was taken over');
ok(!(grep { /open socket .* left in connection/ } @log),
   'no "open socket left" alert at reload');

kill 'QUIT', $pid;
my $start = time;
waitpid $pid, 0;
my $quit = time - $start;
$pid = 0;
cmp_ok($quit, '<', 1, sprintf 'graceful shutdown does not wait on timers '
       . '(%.2f s)', $quit);

open $log, '<', "$root/logs/error.log" or die $!;
@log = <$log>;
close $log;
ok(!(grep { /open socket .* left in connection/ } @log),
   'no "open socket left" alert at shutdown');

done_testing();
