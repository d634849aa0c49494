# Several nginx instances in front of the same backends share their
# placements through Redis: a room placed by one instance is routed to the
# same backend by the others.
#
# Plain Test::More: the Test::Nginx format runs one nginx, this needs two.

use strict;
use warnings;

use Test::More;
use HTTP::Tiny;
use JSON::PP ();
use File::Path qw(make_path remove_tree);
use Time::HiRes qw(sleep time);

use lib 't/helpers';
use RoomAffinity;

my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $modules = $ENV{TEST_NGINX_LOAD_MODULES} || '';
my $base = ($ENV{TEST_NGINX_PORT} || 1984) + 11;
my $root = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-instances';
my $load = join '', map { "load_module $_;\n" } split ' ', $modules;
my @pids;

RoomAffinity::start_control(redis => 1);

END { kill 'QUIT', $_ for @pids; waitpid $_, 0 for @pids }

# one nginx instance; the first one also serves the backends b1..b4; the
# second lists the servers in reverse, so that on its own it would place
# rooms elsewhere: agreeing is the sharing's doing
sub start {
    my ($name, $port, $backends, @order) = @_;
    my $dir = "$root/$name";

    remove_tree($dir);
    make_path("$dir/conf", "$dir/logs");

    open my $fh, '>', "$dir/conf/nginx.conf" or die $!;
    print $fh <<"END";
$load
master_process on;
worker_processes 2;
daemon off;
error_log logs/error.log debug;
pid logs/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    room_affinity_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};
    upstream chat {
        room_affinity \$arg_room zone=inst:1m;
@{[ join '', map { "        server 127.0.0.1:$ENV{\"TEST_NGINX_B${_}_PORT\"};\n" }
         @order ]}    }
$backends
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
        open STDERR, '>', "$dir/logs/stderr.log";
        exec $nginx, '-p', "$dir/", '-c', 'conf/nginx.conf' or exit 1;
    }

    push @pids, $pid;
}

start('a', $base, RoomAffinity::backends(4), 1, 2, 3, 4);
start('b', $base + 1, '', 4, 3, 2, 1);

my $http = HTTP::Tiny->new(timeout => 3);

sub get {
    my ($port, $path) = @_;
    my $r = $http->get("http://127.0.0.1:$port$path");
    return $r->{success} ? $r->{content} : '';
}

for my $port ($base, $base + 1) {
    my $ok = 0;
    for (1 .. 250) {
        my $st = eval { JSON::PP->new->decode(get($port, '/status')) };
        if ($st && ref $st->{redis} && $st->{redis}{connected}) { $ok = 1; last }
        sleep 0.02;
    }
    ok($ok, "instance on port $port subscribed");
}

# what the instance's status says of the rooms shared through Redis
sub shared {
    my ($port) = @_;
    my $st = eval { JSON::PP->new->decode(get($port, '/status')) } // {};
    return $st->{redis}{rooms_shared} // {};
}

# until the instance has received more than $n placements (at most 2 s:
# they go out every 5 ms)
sub wait_received {
    my ($port, $n) = @_;
    for (1 .. 200) {
        return if (shared($port)->{received} // 0) > $n;
        sleep 0.01;
    }
}

# rooms placed by A, then asked of B once B has received the placement
my (%a, $same);
for my $i (1 .. 40) {
    my $before = shared($base + 1)->{received} // 0;
    $a{$i} = get($base, "/?room=r$i");
    wait_received($base + 1, $before);
    $same += get($base + 1, "/?room=r$i") eq $a{$i};
}
is($same, 40, 'B routes all 40 rooms placed by A to the same backends');

my %count;
$count{$a{$_}}++ for keys %a;
is(scalar(keys %count), 4, 'the rooms are spread over the 4 backends');

# rooms placed by either instance, alternately, then asked of the other
$same = 0;
for my $i (1 .. 40) {
    my ($first, $second) = $i % 2 ? ($base, $base + 1) : ($base + 1, $base);
    my $before = shared($second)->{received} // 0;
    my $x = get($first, "/?room=s$i");
    wait_received($second, $before);
    $same += get($second, "/?room=s$i") eq $x;
}
is($same, 40, 'either instance sees the rooms the other placed');

my $sb = eval { JSON::PP->new->decode(get($base + 1, '/status')) } // {};
is(JSON::PP::is_bool($sb->{redis}{rooms_shared}{enabled})
   && $sb->{redis}{rooms_shared}{enabled} ? 1 : 0, 1,
   'the status counts shared placements');
is($sb->{redis}{rooms_shared}{received}, 60, 'B received the 60 placements of A');
is($sb->{redis}{rooms_shared}{published}, 20,
   'B published its own 20, and none it learned');
is($sb->{upstreams}{chat}{zone}{name}, 'inst', 'the zone of B is "inst"');
is($sb->{upstreams}{chat}{zone}{rooms}, 80, 'B knows all 80 rooms');

done_testing();
