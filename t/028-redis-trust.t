# Whoever may PUBLISH or HSET on the Redis must not steer placement:
#
# - the join url is what the configuration allows (room_affinity_url, or
#   ws://host:port), never a message's scheme, path or query;
# - another instance's placement never evicts a room (it is recorded only
#   in free memory), and at most share_rate= of them a second are taken;
# - with key=, only messages signed with the key (or key_next=) and fresh
#   are read: unsigned, forged or old ones, snapshot entries included, are
#   ignored, counted ("signature") and logged;
# - docker/redis-users.acl works with a real redis-server 7: nginx logs in
#   as "nginx" (user=) and works, a backend cannot publish placements.
#
# Plain Test::More: each phase starts its own nginx and its own Redis.

use strict;
use warnings;

use Test::More;
use HTTP::Tiny;
use JSON::PP;
use IO::Socket::INET;
use Digest::SHA qw(hmac_sha256_hex);
use File::Path qw(make_path remove_tree);
use Time::HiRes qw(sleep time);
use POSIX ();

use lib 't/helpers';
use RoomAffinity;

my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $modules = $ENV{TEST_NGINX_LOAD_MODULES} || '';
my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 13;
my $rport = $ENV{TEST_NGINX_REDIS_PORT};
my $root = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-trust';
my $load = join '', map { "load_module $_;\n" } split ' ', $modules;
my ($B1, $B2) = map { $ENV{"TEST_NGINX_B${_}_PORT"} } 1, 2;
my ($A, $B) = RoomAffinity::urls(2);
my $http = HTTP::Tiny->new(timeout => 3, keep_alive => 1);
my ($nginx_pid, $redis_pid);

my $key = 'k' x 8 . '0123456789abcdef0123456789abcdef';
my $key_next = 'n' x 8 . 'fedcba9876543210fedcba9876543210';
my $other = 'x' x 40;
my $npw = 'nginx-secret-0123456789';
my $bpw = 'backend-secret-0123456789';

END {
    local $?;
    stop_nginx();
    RoomAffinity::stop_redis($redis_pid) if $redis_pid;
}

remove_tree($root);
make_path("$root/conf", "$root/logs");

# the repository's ACL file with passwords, and an anonymous "default"
# user with every right: the attacker of these tests, and the login of
# an nginx without user=
open my $in, '<', 'docker/redis-users.acl' or die "docker/redis-users.acl: $!";
open my $acl, '>', "$root/conf/users.acl" or die $!;
while (<$in>) {
    next if /^user default /;
    s/\@NGINX_PASSWORD\@/$npw/;
    s/\@BACKEND_PASSWORD\@/$bpw/;
    print $acl $_;
}
print $acl "user default on nopass ~* &* +\@all\n";
close $acl;
close $in;

for (['key', "$key\n"], ['key_next', $key_next], ['other', $other]) {
    open my $fh, '>', "$root/conf/$_->[0]" or die $!;
    print $fh $_->[1];
    close $fh;
}

chmod 0644, "$root/conf/key";
chmod 0600, "$root/conf/key_next";

$redis_pid = start_redis();

# ---------------------------------------------------------------------
# helpers

sub start_redis {
    my $pid = fork();
    die "fork: $!" unless defined $pid;

    if ($pid == 0) {
        open STDOUT, '>', "$root/logs/redis.log";
        open STDERR, '>&', \*STDOUT;
        exec 'redis-server', '--port', $rport, '--bind', '127.0.0.1',
             '--save', '', '--appendonly', 'no', '--daemonize', 'no',
             '--aclfile', "$root/conf/users.acl"
            or exit 1;
    }

    for (1 .. 300) {
        if (RoomAffinity::redis_ping($rport)) {
            # not another redis-server left on the port
            sleep 0.1;
            die "redis-server with docker/redis-users.acl did not start"
                if waitpid($pid, POSIX::WNOHANG()) != 0;
            return $pid;
        }
        sleep 0.01;
    }

    die "redis-server did not start with docker/redis-users.acl";
}

# a command as a user (undef: the default user); the reply's first line
sub redis {
    my ($user, $pass, @args) = @_;

    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $rport, Timeout => 2)
        or return 'connect failed';
    my $out = '';

    for my $cmd ($user ? (['AUTH', $user, $pass]) : (), \@args) {
        $out .= '*' . @$cmd . "\r\n";
        $out .= '$' . length($_) . "\r\n$_\r\n" for @$cmd;
    }

    print $sock $out;

    my $line;
    if ($user) {
        $line = <$sock>;
        return "auth failed: $line" unless $line =~ /^\+OK/;
    }

    $line = <$sock> // '';
    close $sock;
    $line =~ s/\r?\n\z//;

    return $line;
}

sub publish { redis(undef, undef, 'PUBLISH', @_) }

# several PUBLISH at once, on one link
sub publish_many {
    my ($channel, @msgs) = @_;

    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $rport, Timeout => 2)
        or die "redis: $!";
    my $out = '';
    for (@msgs) {
        $out .= "*3\r\n\$7\r\nPUBLISH\r\n\$" . length($channel)
                . "\r\n$channel\r\n\$" . length($_) . "\r\n$_\r\n";
    }
    print $sock $out;
    <$sock> for @msgs;
    close $sock;
}

sub signed {
    my ($kind, $msg, $k, $ts) = @_;

    $ts //= time;
    $ts = int $ts;

    return "sig1 $ts " . hmac_sha256_hex("$kind\n$ts\n$msg", $k) . "\n$msg";
}

# a placement of another instance (docs/protocol.md)
sub placement {
    my ($how, $upstream, $backend, $room) = @_;

    return "1 00000000000000aa $how $upstream 127.0.0.1:$backend\n$room";
}

sub start_nginx {
    my ($redis_line) = @_;

    stop_nginx();
    unlink "$root/logs/error.log";

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
    $redis_line;
    upstream chat {
        room_affinity \$arg_room zone=trust_chat:1m;
        server 127.0.0.1:$B1;
        server 127.0.0.1:$B2;
    }
    upstream small {
        room_affinity \$arg_room zone=trust_small:32k;
        server 127.0.0.1:$B1;
        server 127.0.0.1:$B2;
    }
@{[ RoomAffinity::backends(2) ]}
    server {
        listen 127.0.0.1:$port;
        location / { proxy_pass http://chat; }
        location /small { proxy_pass http://small; }
        location = /join { room_affinity_join chat; }
        location = /status { room_affinity_status; }
    }
}
END
    close $fh;

    $nginx_pid = fork();
    die "fork: $!" unless defined $nginx_pid;

    if ($nginx_pid == 0) {
        open STDERR, '>', "$root/logs/stderr.log";
        exec $nginx, '-p', "$root/", '-c', 'conf/nginx.conf' or exit 1;
    }

    return wait_for(sub { ($_[0]{redis}{connected} // '') eq '1' });
}

sub stop_nginx {
    return unless $nginx_pid;
    kill 'QUIT', $nginx_pid;
    waitpid $nginx_pid, 0;
    $nginx_pid = undef;
}

sub get {
    my ($path) = @_;
    my $r = $http->get("http://127.0.0.1:$port$path");
    return $r->{success} ? $r->{content} : "error $r->{status}";
}

sub status {
    my $s = get('/status');
    return eval { decode_json($s) } || {};
}

# polls the status until the condition holds (5 s at most); the status
sub wait_for {
    my ($cond) = @_;
    my $s;

    for (1 .. 250) {
        $s = status();
        return $s if eval { $cond->($s) };
        sleep 0.02;
    }

    return $s;
}

sub backend {
    my ($s, $upstream, $port) = @_;

    my ($b) = grep { $_->{server} eq "127.0.0.1:$port" }
              @{ $s->{upstreams}{$upstream}{backends} || [] };
    return $b || {};
}

sub rejected { $_[0]{redis}{messages}{rejected_by_reason}{$_[1]} // -1 }

sub error_log {
    open my $fh, '<', "$root/logs/error.log" or return '';
    local $/;
    return <$fh>;
}

# ---------------------------------------------------------------------
# phase 1: no key; the join url and the rooms of other instances

my $long = 'z' x 500;

my $s = start_nginx("room_affinity_redis 127.0.0.1:$rport");
ok($s->{redis}{connected}, 'nginx without user= subscribed');

like(publish('register',
             qq({"url":"wss://127.0.0.1:$B1/phish?next=https://evil.example/"})),
     qr/^:1$/, 'a register message with a rewritten url published');
$s = wait_for(sub { backend($_[0], 'chat', $B1)->{registered} });
ok(backend($s, 'chat', $B1)->{registered},
   'the registration applies to the server of its host:port');
is(get('/join?roomName=phish'),
   qq({"url":"ws://127.0.0.1:$B1","roomName":"phish","new":true}\r\n),
   'the join answer keeps ws://host:port, not the message\'s url')
    or diag("status url: " . backend($s, 'chat', $B1)->{url});
unlike(get('/join?roomName=phish'), qr/phish\?|wss:/,
       'no scheme, path or query of a message reaches a join answer');
like(error_log(), qr/url "wss:\/\/127\.0\.0\.1:$B1\/phish\?next=https:\/\/evil\.example\/" of a report for "127\.0\.0\.1:$B1" not used by the join API/,
     'the refused url is logged');

# a ws://host:port url is still taken
publish('register', qq({"url":"ws://127.0.0.1:$B2"}));
$s = wait_for(sub { backend($_[0], 'chat', $B2)->{registered} });
is(backend($s, 'chat', $B2)->{url}, "ws://127.0.0.1:$B2",
   'a plain ws://host:port url is the join url');

# the small zone filled with idle rooms of this instance, until it evicts
my $n = 0;
for (1 .. 200) {
    get("/small?room=local$n-$long");
    last if ++$n > 20 && status()->{upstreams}{small}{zone}{evicted};
}
$s = status();
my $evicted = $s->{upstreams}{small}{zone}{evicted};
ok($evicted, "the small zone is full after $n rooms (evicted $evicted)");
my $rooms = $s->{upstreams}{small}{zone}{rooms};

publish_many('room_affinity:rooms',
             map { placement('n', 'small', $B2, "remote$_-$long") } 1 .. 20);
$s = wait_for(sub {
    my $sh = $_[0]{redis}{rooms_shared};
    ($sh->{received} // 0) + ($sh->{refused} // 0) >= 20 });

is($s->{upstreams}{small}{zone}{evicted}, $evicted,
   'placements of another instance evicted no room of this one');
my $added = $s->{upstreams}{small}{zone}{rooms} - $rooms;
ok($added >= 0, "the zone keeps its rooms ($added added)");
ok($s->{redis}{rooms_shared}{refused} >= 1,
   'placements that find no free memory are refused');
is($s->{redis}{rooms_shared}{refused} + $added, 20,
   'each of the 20 placements is recorded in free memory or refused');
like(error_log(), qr/refused a placement of another instance: the zone is full/,
     'the refusal is logged');

# ---------------------------------------------------------------------
# phase 2: key=, key_next=, user=nginx; the backends' own user

# poisoned snapshot entries, there before nginx starts: unsigned
# "draining" for b1, forged for b2; a good one for b2 after them
redis(undef, undef, 'DEL', 'room_affinity:backends');
like(redis('backend', $bpw, 'HSET', 'room_affinity:backends', 'b1',
           qq({"url":"$A","connections":0,"draining":true})),
     qr/^:1$/, 'the backend user may HSET the snapshot hash');
redis('backend', $bpw, 'HSET', 'room_affinity:backends', 'b2x',
      signed('signaling', qq({"url":"$B","connections":0,"draining":true}),
             $other));
redis('backend', $bpw, 'HSET', 'room_affinity:backends', 'b2',
      signed('signaling', qq({"url":"$B","connections":42}), $key));

$s = start_nginx("room_affinity_redis 127.0.0.1:$rport user=nginx "
                 . "password=$npw key=key key_next=key_next share_rate=5");
ok($s->{redis}{connected}, 'nginx logged in as the ACL user "nginx" and subscribed');
ok($s->{redis}{signed}, 'the status says messages must be signed');

my $startup = error_log() . do {
    open my $e, '<', "$root/logs/stderr.log"; local $/; <$e> // '' };
like($startup, qr/the key file "[^"]*\/key" is readable by other users/,
     'a key file readable by others is warned about');
unlike($startup, qr/the key file "[^"]*key_next" is readable/,
       'a key file of mode 0600 is not');

$s = wait_for(sub { $_[0]{redis}{snapshots} >= 1
                    && rejected($_[0], 'signature') >= 2 });
is(rejected($s, 'signature'), 2,
   'the unsigned and the forged snapshot entries are rejected');
ok(!backend($s, 'chat', $B1)->{registered}
   && backend($s, 'chat', $B1)->{state} eq 'up',
   'the unsigned snapshot entry did not drain b1');
is(backend($s, 'chat', $B2)->{report}{connections}, 42,
   'the signed snapshot entry applied');
is(backend($s, 'chat', $B2)->{state}, 'up',
   'the forged snapshot entry did not drain b2');

# the backend user publishes signed reports; unsigned ones are ignored
like(redis('backend', $bpw, 'PUBLISH', 'signaling',
           signed('signaling', qq({"url":"$A","connections":7}), $key)),
     qr/^:1$/, 'the backend user may PUBLISH on signaling');
$s = wait_for(sub { (backend($_[0], 'chat', $B1)->{report}{connections}
                     // -1) == 7 });
is(backend($s, 'chat', $B1)->{report}{connections}, 7,
   'a report signed with key= applies');

publish('signaling', qq({"url":"$A","connections":0,"draining":true}));
publish('signaling', signed('signaling',
                            qq({"url":"$A","connections":0,"draining":true}),
                            $other));
publish('signaling', signed('signaling',
                            qq({"url":"$A","connections":0,"draining":true}),
                            $key, time - 3600));
publish('signaling', signed('register',
                            qq({"url":"$A","connections":0,"draining":true}),
                            $key));
$s = wait_for(sub { rejected($_[0], 'signature') >= 6 });
is(rejected($s, 'signature'), 6,
   'unsigned, other key, an hour old, signed as another kind: 4 rejected');
is(backend($s, 'chat', $B1)->{state}, 'up', 'b1 is not draining');
is(backend($s, 'chat', $B1)->{report}{connections}, 7,
   'b1 keeps its signed report');

my $log = error_log();
# one line per reason and 5 s: the first snapshot entry rejected
like($log, qr/ignored redis message on "room_affinity:backends": signature \((unsigned message|signature does not match any key)\), \d+ bytes "(\{"url":|sig1 \d+ [0-9a-f]+)/,
     'a rejected snapshot entry is logged with its reason');

# rotation: key_next= is accepted too
publish('signaling', signed('signaling', qq({"url":"$A","connections":9}),
                            $key_next));
$s = wait_for(sub { (backend($_[0], 'chat', $B1)->{report}{connections}
                     // -1) == 9 });
is(backend($s, 'chat', $B1)->{report}{connections}, 9,
   'a report signed with key_next= applies');

# a signed register with a phishing url: applies, but not its url
publish('register', signed('register',
    qq({"url":"wss://127.0.0.1:$B1/phish?next=https://evil.example/"}),
    $key));
$s = wait_for(sub { backend($_[0], 'chat', $B1)->{registered} });
ok(backend($s, 'chat', $B1)->{registered}, 'the signed registration applies');
like(get('/join?roomName=signedphish'),
     qr/\A\{"url":"ws:\/\/127\.0\.0\.1:\d+","roomName":"signedphish"/,
     'even signed, the url is not taken from the message');
is(backend($s, 'chat', $B1)->{url}, "ws://127.0.0.1:$B1",
   'b1 keeps the plain url of its signed reports');

# a live room is not split by a forged move
my $first = get('/?room=split1');
my ($other_port) = $first eq "b1\n" ? ($B2) : ($B1);
publish('room_affinity:rooms', placement('m', 'chat', $other_port, 'split1'));
$s = wait_for(sub { rejected($_[0], 'signature') >= 7 });
is(rejected($s, 'signature'), 7, 'the unsigned placement is rejected');
is(get('/?room=split1'), $first, 'the room stays on its backend');

# our own placements go out signed: a subscriber sees "sig1 "
my $sub = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $rport,
                                Timeout => 3) or die "redis: $!";
print $sub "*2\r\n\$9\r\nSUBSCRIBE\r\n\$19\r\nroom_affinity:rooms\r\n";
my $got = '';
for (1 .. 6) { $got .= <$sub> // '' }     # the subscribe confirmation
get('/?room=outgoing1');
my $deadline = time + 3;
$got = '';
while (time < $deadline && $got !~ /outgoing1/) {
    my $line = <$sub>;
    last unless defined $line;
    $got .= $line;
}
close $sub;
like($got, qr/sig1 \d+ [0-9a-f]{64}\n1 [0-9a-f]{16} n chat 127\.0\.0\.1:\d+\noutgoing1/,
     'this instance signs the placements it publishes');

# a signed placement of another instance is taken, at most share_rate=5/s
publish('room_affinity:rooms',
        signed('rooms', placement('n', 'chat', $B2, 'remote-ok'), $key));
$s = wait_for(sub { $_[0]{redis}{rooms_shared}{adopted} >= 1 });
is($s->{redis}{rooms_shared}{adopted}, 1, 'a signed placement is recorded');
is(get('/?room=remote-ok'), "b2\n", 'and routes the room');

sleep 1.1;     # the bucket fills again
my $before = $s->{redis}{rooms_shared};
publish_many('room_affinity:rooms',
             map { signed('rooms', placement('n', 'chat', $B1, "flood$_"),
                          $key) } 1 .. 40);
$s = wait_for(sub {
    my $sh = $_[0]{redis}{rooms_shared};
    $sh->{received} + $sh->{refused}
        >= $before->{received} + $before->{refused} + 40 });
my $adopted = $s->{redis}{rooms_shared}{adopted} - $before->{adopted};
my $refused = $s->{redis}{rooms_shared}{refused} - $before->{refused};
ok($adopted >= 5 && $adopted <= 20,
   "a burst of 40 placements: $adopted recorded (share_rate=5)");
is($adopted + $refused, 40, "the other $refused are refused and counted");

# the roles of docker/redis-users.acl
like(redis('backend', $bpw, 'PUBLISH', 'room_affinity:rooms',
           placement('m', 'chat', $B1, 'split1')),
     qr/^-NOPERM/, 'the backend user cannot PUBLISH on the rooms channel');
like(redis('backend', $bpw, 'HSET', 'other', 'f', 'v'), qr/^-NOPERM/,
     'nor write another key');
like(redis('nginx', $npw, 'HSET', 'room_affinity:backends', 'f', 'v'),
     qr/^-NOPERM/, 'the nginx user cannot write the snapshot hash');
like(redis('nginx', $npw, 'PUBLISH', 'signaling', '{}'), qr/^-NOPERM/,
     'nor publish as a backend');
like(redis('nginx', $npw, 'PUBLISH', 'room_affinity:rooms', 'x'), qr/^:\d+$/,
     'but it may publish placements');
like(redis('nginx', 'wrong', 'PING'), qr/auth failed/,
     'a wrong password is refused');

# the room directory's script as the nginx user: its own keys only
like(redis('nginx', $npw, 'EVAL',
           "redis.call('hset', KEYS[1], 'b', 'x') "
           . "redis.call('pexpire', KEYS[1], 1000) "
           . "return redis.call('hmget', KEYS[1], 'b')[1]",
           '1', 'room_affinity:dir:chat:acl'),
     qr/^\$1$/, 'the nginx user may run a script on a directory key (a bulk "x")');
like(redis('nginx', $npw, 'EVAL', "return redis.call('hset', KEYS[1], 'b', 'x')",
           '1', 'room_affinity:backends'),
     qr/NOPERM|no permissions/i,
     'but a script of it cannot write the snapshot hash');
like(redis('nginx', $npw, 'HSET', 'other', 'f', 'v'), qr/^-NOPERM/,
     'nor any other key');
like(redis('nginx', $npw, 'SCRIPT', 'FLUSH'), qr/^-NOPERM/,
     'nor flush the scripts');

unlike(error_log(), qr/\[(crit|alert|emerg)\]/, 'no crit, alert or emerg');

stop_nginx();

# a key too short, a missing file: nginx -t names the problem
open my $fh, '>', "$root/conf/short" or die $!;
print $fh "short\n";
close $fh;

for (['key=short', qr/the key is shorter than 16 bytes/],
     ['key=missing', qr/cannot open the key file/],
     ['key_next=key', qr/"key_next=" needs "key="/],
     ['user=nginx', qr/"user=" needs "password="/])
{
    open my $c, '>', "$root/conf/t.conf" or die $!;
    print $c "$load\nevents {}\nhttp { room_affinity_redis 127.0.0.1:$rport "
             . "$_->[0]; }\n";
    close $c;
    my $out = `$nginx -t -p $root/ -c conf/t.conf 2>&1`;
    like($out, $_->[1], "nginx -t: $_->[0] is refused");
}

done_testing();
