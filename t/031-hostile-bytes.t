# The status and the join API answer valid JSON whatever the bytes of a
# room name: a byte that is not part of well-formed UTF-8 is written as
# \ufffd (U+FFFD).  Rooms taken from raw header bytes, and ?room=%FF.
# (Issue 12, item 6: before, those bytes were echoed as they were.)
#
# A JSON body of too many values (1 MB of "{}") is not parsed past
# RA_BODY_MAX_VALUES (20,000; each "{", "[" and "," outside strings counts
# one): the room is missing, strict mode answers 400 too_many_values.
# (Before, a worker parsed all of it: the request took 300-400 ms here.)
#
# Plain Test::More: the answers are checked as bytes (strict UTF-8, with
# Encode) and parsed with JSON::PP in UTF-8 mode.

use strict;
use warnings;

use Test::More;
use HTTP::Tiny;
use JSON::PP;
use Encode ();
use IO::Socket::INET;
use File::Path qw(make_path remove_tree);
use Time::HiRes qw(sleep time);

use lib 't/helpers';
use RoomAffinity;

my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $modules = $ENV{TEST_NGINX_LOAD_MODULES} || '';
my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 13;
my $root = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-status-bytes';
my $b1 = $ENV{TEST_NGINX_B1_PORT};

remove_tree($root);
make_path("$root/conf", "$root/logs");

my $load = join '', map { "load_module $_;\n" } split ' ', $modules;

open my $fh, '>', "$root/conf/nginx.conf" or die $!;
print $fh <<"END";
$load
master_process off;
daemon off;
error_log logs/error.log notice;
pid logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    upstream chat {
        room_affinity \$http_x_room zone=bytes:1m;
        server 127.0.0.1:$b1;
    }
    upstream body {
        room_affinity \$room_affinity_body_room zone=body:1m;
        server 127.0.0.1:$b1;
    }
    client_max_body_size 4m;
    client_body_buffer_size 4m;
    server { listen 127.0.0.1:$b1; return 200 "b1\\n"; }
    server {
        listen 127.0.0.1:$port;
        location / { proxy_pass http://chat; }
        location = /status { room_affinity_status; }
        location = /join { room_affinity_join chat; }
        location = /body {
            room_affinity_body strict;
            proxy_pass http://body;
        }
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

# a raw request: header values as bytes
sub raw {
    my ($req) = @_;
    my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Timeout => 5) or return (0, '');
    print $c $req;
    local $/;
    my $r = <$c> // '';
    my ($code) = $r =~ m{^HTTP/1\.\d (\d+)};
    $r =~ s/\A.*?\r\n\r\n//s;
    return ($code // 0, $r);
}

sub get {
    return raw("GET $_[0] HTTP/1.0\r\nHost: x\r\n\r\n");
}

# strict UTF-8 and JSON: the decoded value, or undef
sub json {
    my ($bytes) = @_;
    my $copy = $bytes;
    return undef unless eval {
        Encode::decode('UTF-8', $copy, Encode::FB_CROAK); 1 };
    return eval { JSON::PP->new->utf8->decode($bytes) };
}

my $start = time;
until ((get('/status'))[0] == 200) {
    die "nginx did not start" if time - $start > 10;
    sleep 0.05;
}

my %rooms = (
    ff        => "\xff",
    double    => "a\xc3\xc3b",
    surrogate => "\xed\xa0\x80",
    overlong  => "\xc0\xaf",
    cut       => "abc\xe2\x82",
    valid     => "caf\xc3\xa9",
);

for my $k (sort keys %rooms) {
    my ($code, $body) = raw("GET / HTTP/1.0\r\nHost: x\r\n"
                            . "X-Room: $rooms{$k}\r\n\r\n");
    is("$code $body", "200 b1\n", "room from raw header bytes ($k) proxied");
}

my %expect = (
    ff        => "\x{fffd}",
    double    => "a\x{fffd}\x{fffd}b",
    surrogate => "\x{fffd}\x{fffd}\x{fffd}",
    overlong  => "\x{fffd}\x{fffd}",
    cut       => "abc\x{fffd}\x{fffd}",
    valid     => "caf\x{e9}",
);

for my $k (sort keys %rooms) {
    my $q = join '', map { sprintf '%%%02X', ord } split //, $rooms{$k};
    my ($code, $body) = get("/status?room=$q");
    my $j = json($body);
    is($code, 200, "status of the room ($k): 200");
    ok($j, "status of the room ($k): valid UTF-8 JSON")
        or diag(unpack 'H*', $body);
    is($j && $j->{room}, $expect{$k}, "status of the room ($k): the name "
       . "with U+FFFD for each stray byte");
}

my ($code, $body) = get('/status?room=%FE%FF');
is($code, 404, 'an unknown room: 404');
ok(json($body), 'an unknown room: valid UTF-8 JSON')
    or diag(unpack 'H*', $body);

($code, $body) = get('/status');
ok(json($body), 'the whole status: valid UTF-8 JSON');

# the join API: a query argument that is not well-formed UTF-8 is refused
for my $q ('%C3%C3', '%ED%A0%80', '%FF', '%C0%AF') {
    ($code, $body) = get("/join?roomName=$q");
    my $j = json($body);
    is($code, 400, "join ?roomName=$q: 400");
    is($j && $j->{error}, 'invalid_room', "join ?roomName=$q: invalid_room");
}

($code, $body) = get('/join?roomName=caf%C3%A9');
my $j = json($body);
is($code, 200, 'join of a UTF-8 room: 200');
is($j && $j->{roomName}, "caf\x{e9}", 'join of a UTF-8 room: the name');

# bodies of many values
sub post {
    my ($n) = @_;
    my $body = '{"roomName":"many","junk":[' . join(',', ('{}') x $n) . ']}';
    my $t = time;
    my ($code, $answer) = raw("POST /body HTTP/1.0\r\nHost: x\r\n"
        . "Content-Type: application/json\r\nContent-Length: "
        . length($body) . "\r\n\r\n$body");
    return ($code, $answer, time - $t, length $body);
}

my ($c, $a, $took, $len) = post(9000);
is("$c $a", "200 b1\n", "a body of 9,000 values ($len bytes) is parsed");

($c, $a, $took, $len) = post(340000);
$j = json($a);
is($c, 400, sprintf 'a body of 340,000 values (%d bytes): 400 in %.0f ms',
   $len, $took * 1000);
is($j && $j->{error}, 'too_many_values', 'too_many_values');

kill 'QUIT', $pid;
waitpid $pid, 0;
$pid = 0;

done_testing();
