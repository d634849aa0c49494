# The room directory (room_affinity_redis ... directory=on): three nginx
# instances that see the first members of a room at the same moment send
# them to one backend, a room the zone holds costs no Redis call, the join
# API asks the same directory, and the status counts it all.
#
# Plain Test::More: the Test::Nginx format runs one nginx, this needs three.

use strict;
use warnings;

use Test::More;
use HTTP::Tiny;
use JSON::PP ();
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(sleep time);
use File::Path ();

use lib 't/helpers';
use RoomAffinity;

my $base = ($ENV{TEST_NGINX_PORT} || 1984) - 70;
my @ports = ($base, $base + 1, $base + 2);
my @pids;

RoomAffinity::start_control(redis => 1);

END { kill 'QUIT', $_ for @pids; waitpid $_, 0 for @pids }

# the servers in another order and with other weights at each instance:
# on its own, each would place many rooms elsewhere
my @weights = ([8, 1, 1, 1], [1, 8, 1, 1], [1, 1, 8, 1]);

for my $i (0 .. 2) {
    my $servers = join '', map {
        "        server 127.0.0.1:$ENV{\"TEST_NGINX_B${_}_PORT\"}"
        . " weight=$weights[$i][$_ - 1];\n"
    } 1 .. 4;

    push @pids, RoomAffinity::instance("dir$i", <<"END");
    room_affinity_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT} directory=on
                        directory_wait=200ms;
    upstream chat {
        room_affinity \$arg_room zone=dir:1m;
$servers    }
@{[ $i == 0 ? RoomAffinity::backends(4) : '' ]}
    server {
        listen 127.0.0.1:$ports[$i];
        location / { proxy_pass http://chat; }
        location = /join { room_affinity_join chat; }
        location = /status { room_affinity_status; }
    }
END
}

my $http = HTTP::Tiny->new(timeout => 5);

sub get {
    my ($port, $path) = @_;
    my $r = $http->get("http://127.0.0.1:$port$path");
    return $r->{success} ? $r->{content} : '';
}

sub status {
    my ($port) = @_;
    return eval { JSON::PP->new->decode(get($port, '/status')) } // {};
}

sub dir { RoomAffinity::directory_of(@_) }

sub sum { RoomAffinity::directory_sum($_[0], undef, @ports) }

for my $port (@ports) {
    my $ok = 0;
    for (1 .. 300) {
        if (get($port, '/status')) { $ok = 1; last }
        sleep 0.02;
    }
    ok($ok, "instance on port $port answers");
}

# the same request sent to every instance at once; the answers, in order
sub at_once {
    my ($path) = @_;
    my @s = map {
        IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $_,
                              Timeout => 3) or die "connect: $!"
    } @ports;

    my $req = "GET $path HTTP/1.0\r\nHost: x\r\n\r\n";
    syswrite $_, $req for @s;

    my @out;
    for my $s (@s) {
        local $/;
        my $resp = <$s> // '';
        my ($body) = $resp =~ /\r\n\r\n(.*)\z/s;
        push @out, $body // '';
        close $s;
    }
    return @out;
}

# concurrent first requests of 150 new rooms through the three instances
my ($split, $answered) = (0, 0);
my %on;
for my $i (1 .. 150) {
    my @b = at_once("/?room=c$i");
    $answered += scalar grep { /^b\d$/ } @b;
    $split++ if grep { $_ ne $b[0] } @b;
    $on{$b[0]}++;
}

is($answered, 450, 'every request was answered by a backend');
is($split, 0, 'no room of 150 is split: the three instances agree');
ok(keys(%on) >= 2, 'the rooms are spread over the backends ('
   . join(' ', map { "$_=$on{$_}" } sort keys %on) . ')');

is(sum('misses'), 150, 'each room was recorded once');
is(sum('hits'), 300, 'the two other first requests found the record');
is(sum('adopted'), 300, 'and adopted another instance\'s placement');
ok(sum('lost_races') > 0, 'some of them were races lost ('
   . sum('lost_races') . ')');
is(sum('unconfirmed'), 0, 'no room was placed without the directory');

# rooms the zone holds: no Redis call
my @calls = map { dir($_)->{calls} } @ports;
my $same = 0;
for my $i (1 .. 50) {
    my @b = at_once("/?room=c$i");
    $same++ unless grep { $_ ne $b[0] } @b;
}
is($same, 50, 'known rooms stay where they are');
is_deeply([map { dir($_)->{calls} } @ports], \@calls,
          'known rooms cost no directory call');

my $d = dir($ports[0]);
ok($d->{rtt_us}{count} > 0 && $d->{rtt_us}{avg} > 0
   && $d->{rtt_us}{max} >= $d->{rtt_us}{avg},
   "the round-trip time is measured (avg $d->{rtt_us}{avg} us)");

# the join API goes through the directory too
my %port_of = map { $ENV{"TEST_NGINX_B${_}_PORT"} => "b$_" } 1 .. 4;
my $agree = 0;
for my $i (1 .. 20) {
    my $j = eval { JSON::PP->new->decode(get($ports[$i % 3], "/join?roomName=j$i")) }
            // {};
    my ($port) = ($j->{url} // '') =~ /:(\d+)/;
    my $be = $port ? $port_of{$port} // '' : '';
    my @p = map { my $x = get($_, "/?room=j$i"); chomp $x; $x } @ports;
    $agree++ if $be && !grep { $_ ne $be } @p;
}
is($agree, 20, 'rooms placed by a join are proxied to the same backend');

my ($new_first, $new_later) = (0, 0);
for my $i (1 .. 10) {
    my @j = map {
        eval { JSON::PP->new->decode(get($_, "/join?roomName=n$i")) } // {}
    } @ports;
    $new_first++ if $j[0]{new};
    $new_later++ if $j[1]{new} || $j[2]{new};
}
is($new_first, 10, 'a join that records the room says "new"');
is($new_later, 0, 'the joins of the other instances do not');

# Prometheus
my $prom = get($ports[1], '/status?format=prometheus');
like($prom, qr/^room_affinity_directory_misses_total\{upstream="chat"\} \d+$/m,
     'Prometheus: directory misses');
like($prom, qr/^room_affinity_directory_rtt_seconds_sum\{upstream="chat"\} [\d.]+$/m,
     'Prometheus: directory round-trip time');
like($prom, qr/^# TYPE room_affinity_directory_splits_total counter$/m,
     'Prometheus: splits declared');

my $parsed = get($ENV{TEST_NGINX_CONTROL_PORT},
                 "/prometheus-check?port=$ports[1]&wait=0");
like($parsed, qr/^parsed \d+ families/m,
     'the exposition parses with the Prometheus client');
my ($inf) = $parsed =~ /^room_affinity_directory_rtt_seconds_bucket le=\+Inf,upstream=chat ([\d.]+)$/m;
my ($cnt) = $parsed =~ /^room_affinity_directory_rtt_seconds_count upstream=chat ([\d.]+)$/m;
ok(defined $inf && defined $cnt && $inf == $cnt && $cnt > 0,
   'the round-trip histogram: +Inf bucket = count ('
   . ($inf // 'none') . ')');
my $h = dir($ports[1])->{rtt_us}{le} // {};
is($h->{inf}, dir($ports[1])->{rtt_us}{count},
   'JSON: the histogram is cumulative to the count');

# the records themselves
my $rec = RoomAffinity::redis_command($ENV{TEST_NGINX_REDIS_PORT}, 'HINCRBY',
                                      'room_affinity:dir:chat:c1', 'e', '0');
is($rec, ':1', 'the record of a room has epoch 1');

# configuration errors, as nginx -t says them
sub conf_error {
    my ($redis) = @_;
    my $dir = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-dirconf';
    File::Path::make_path("$dir/conf", "$dir/logs");
    open my $fh, '>', "$dir/conf/nginx.conf" or die $!;
    print $fh join('', map { "load_module $_;\n" }
                   split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || ''))
        . "events {}\nhttp {\n    resolver 127.0.0.1;\n"
        . "    room_affinity_redis $redis;\n"
        . "    upstream u { room_affinity \$arg_room zone=c:1m; "
        . "server 127.0.0.1:1; }\n}\n";
    close $fh;
    my $bin = $ENV{TEST_NGINX_BINARY} || 'nginx';
    return scalar `$bin -t -p $dir/ -c conf/nginx.conf 2>&1`;
}

like(conf_error('redis.example.com:6379 resolve directory=on'),
     qr/"directory=on" needs an IP address or a unix socket, not "resolve"/,
     'directory=on refuses "resolve"');
like(conf_error('127.0.0.1:6379 directory=on directory_wait=0'),
     qr/invalid time in "directory_wait=0", it must be between 1ms and 10s/,
     'directory_wait=0 is refused');
like(conf_error('127.0.0.1:6379 directory=maybe'),
     qr/invalid parameter "directory=maybe"/, 'directory=maybe is refused');
like(conf_error('127.0.0.1:6379 directory=on directory_wait=20ms'),
     qr/test is successful/, 'directory=on directory_wait=20ms is accepted');

done_testing();
