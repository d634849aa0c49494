package Test::Nginx::Lite::TCP;

# The --- tcp_listen mock server of the project's Test::Nginx::Socket runner:
# a forked process that accepts ONE connection on a TCP port (or a unix
# socket path ending in .sock), records what it receives, and answers with
# --- tcp_reply, as the real Test::Nginx's embedded TCP server does.

use strict;
use warnings;

use Exporter 'import';
use Errno qw(EADDRINUSE);
use File::Temp ();
use IO::Socket::INET ();
use IO::Socket::UNIX ();
use POSIX ();
use Socket qw(SOCK_STREAM);
use Time::HiRes qw(sleep);

our @EXPORT_OK = qw(start_tcp_server stop_tcp_server);

# %o: target, reply (string, array of strings, or code ref called with what
# was received), reply_delay (secs), query_len, shutdown (0|1|2),
# shutdown_delay, no_close, timeout.
# Returns { pid, query_file } or dies with a message.
sub start_tcp_server {
    my (%o) = @_;
    my $target = $o{target};
    my $listen;
    for my $try (1 .. 30) {
        if ($target =~ /^\d+$/) {
            $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $target,
                                            Proto => 'tcp', ReuseAddr => 1, Listen => 5);
        } elsif ($target =~ /\.sock$/) {
            unlink $target;
            $listen = IO::Socket::UNIX->new(Local => $target, Type => SOCK_STREAM, Listen => 5);
        } else {
            die "bad --- tcp_listen target: $target\n";
        }
        last if $listen;
        die "cannot listen on $target: $!\n" unless $! == EADDRINUSE;
        sleep 0.1;
    }
    die "cannot listen on $target: $!\n" unless $listen;

    my $qfile = File::Temp->new(UNLINK => 0, TMPDIR => 1, TEMPLATE => 'tcp_query_XXXXXX')->filename;

    my $pid = fork // die "fork: $!\n";
    if ($pid) {
        close $listen;
        return { pid => $pid, query_file => $qfile, target => $target };
    }

    # child: no Test::Builder output, no END blocks
    eval { _serve($listen, $qfile, %o) };
    warn "tcp_listen server: $@" if $@;
    POSIX::_exit(0);
}

sub _serve {
    my ($listen, $qfile, %o) = @_;
    my $client;
    until ($client = $listen->accept) {
        sleep 0.01;
    }
    my ($no_read, $no_write);
    if (defined $o{shutdown}) {
        sleep $o{shutdown_delay} if $o{shutdown_delay};
        shutdown $client, $o{shutdown};
        $no_read  = 1 if $o{shutdown} == 0 || $o{shutdown} == 2;
        $no_write = 1 if $o{shutdown} == 1 || $o{shutdown} == 2;
    }

    my $buf = '';
    unless ($no_read) {
        while (1) {
            my $n = sysread $client, my $chunk, 65536;
            last if !$n;
            $buf .= $chunk;
            open my $out, '>', $qfile or die "$qfile: $!";
            print $out $buf;
            close $out;
            last if !$o{query_len} || length $buf >= $o{query_len};
        }
    }

    sleep $o{reply_delay} if $o{reply_delay};

    my $reply = $o{reply};
    $reply = $reply->($buf) if ref $reply eq 'CODE';
    if (!$no_write && defined $reply) {
        for my $r (ref $reply eq 'ARRAY' ? @$reply : $reply) {
            my $off = 0;
            while ($off < length $r) {
                my $n = syswrite $client, $r, length($r) - $off, $off;
                last unless $n;
                $off += $n;
            }
        }
    }
    sleep 3600 while $o{no_close};
    close $client;
}

# kill the server (if it still runs) and return what it received
sub stop_tcp_server {
    my ($srv) = @_;
    kill 'KILL', $srv->{pid};
    waitpid $srv->{pid}, 0;
    unlink $srv->{target} if $srv->{target} =~ /\.sock$/;
    my $data = '';
    if (open my $in, '<', $srv->{query_file}) {
        local $/;
        $data = <$in> // '';
    }
    unlink $srv->{query_file};
    return $data;
}

1;
