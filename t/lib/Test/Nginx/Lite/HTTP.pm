package Test::Nginx::Lite::HTTP;

# The client side of the project's Test::Nginx::Socket runner: turning the
# --- request text into bytes on the wire, a raw-socket HTTP/1.x client, and
# a response parser (status, headers, chunked / Content-Length / until-close
# bodies).  No Test::More here: callers turn results into test outcomes.

use strict;
use warnings;

use Exporter 'import';
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use HTTP::Headers ();
use IO::Select ();
use IO::Socket::INET ();
use Time::HiRes qw(sleep time);

our @EXPORT_OK = qw(build_request build_request_packets parse_more_headers
                    send_request parse_response);

# "Name: value" lines (comments and blank lines skipped) -> ("Name: value\r\n"..., $is_chunked)
sub parse_more_headers {
    my ($text) = @_;
    my ($out, $chunked) = ('', 0);
    for my $line (split /\n+/, $text // '') {
        next if $line =~ /^\s*#/ || $line !~ /\S/;
        $line =~ s/\r$//;
        my ($k, $v) = split /:\s*/, $line, 2;
        $v //= '';
        $chunked = 1 if lc($k) eq 'transfer-encoding' && $v eq 'chunked';
        $out .= "$k: $v\r\n";
    }
    return ($out, $chunked);
}

# Build one request from the --- request text:
#   METHOD [URI [PROTOCOL]]     (URI defaults to /, PROTOCOL to HTTP/1.1)
#   body...                     (optional)
# Adds Host ($host, default localhost) and Connection headers unless more_headers has them, and a
# Content-Length (with the body trimmed, as the real Test::Nginx does) for a
# non-empty body unless the request is chunked or more_headers sets one.
# Returns (bytes, layout) where layout describes where the request line and
# body landed (used to keep packet boundaries).
sub build_request {
    my ($text, $more_headers, $conn, $name, $host) = @_;
    $host //= 'localhost';
    $text //= '';
    # leading blank and comment lines are ignored
    1 while $text =~ s/\A\s*#[^\n]*\n// || $text =~ s/\A\s+//;

    my ($first, $body) = split /\n/, $text, 2;
    die "$name - request line should be non-empty\n" unless defined $first && $first =~ /\S/;
    my $first_len = length($first) + (defined $body ? 1 : 0);
    my ($meth, $uri, $proto, @rest) = split ' ', $first;
    die "$name - request line is not valid: \"$first\"\n" if @rest;
    $uri //= '/';
    $proto //= 'HTTP/1.1';
    $body //= '';

    my ($hdrs, $chunked) = parse_more_headers($more_headers);
    my $lead_trim = 0;
    my $cl = '';
    if (!$chunked && $body ne '' && $hdrs !~ /(?:^|\n)Content-Length\s*:/i) {
        $lead_trim = length($1) if $body =~ s/\A(\s+)//;
        $body =~ s/\s+\z//;
        $cl = 'Content-Length: ' . length($body) . "\r\n";
    }

    my $head = '';
    $head .= "Host: $host\r\n" if $hdrs !~ /(?:^|\n)Host\s*:/i;
    $head .= "Connection: $conn\r\n" if $hdrs !~ /(?:^|\n)Connection\s*:/i;
    my $line = "$meth $uri";
    my $req = "$line $proto\r\n$head$hdrs$cl\r\n";
    my %layout = (line_len => length($line), orig_first_len => $first_len,
                  body_start => length($req), lead_trim => $lead_trim,
                  body_len => length($body));
    return ($req . $body, \%layout);
}

# A request given as packets (strings or {value => ..., delay_before => ...})
# is built as a whole, then cut again at the corresponding places.
sub build_request_packets {
    my ($packets, $more_headers, $conn, $name, $host) = @_;
    my @vals = map { ref $_ eq 'HASH' ? $_->{value} : $_ } @$packets;
    my ($req, $l) = build_request(join('', @vals), $more_headers, $conn, $name, $host);
    my @cuts;
    my $off = 0;
    for my $v (@vals[0 .. $#vals - 1]) {
        $off += length $v;
        my $pos;
        if ($off < $l->{orig_first_len}) {
            $pos = $off < $l->{line_len} ? $off : $l->{line_len};
        } else {
            my $b = $off - $l->{orig_first_len} - $l->{lead_trim};
            $b = 0 if $b < 0;
            $b = $l->{body_len} if $b > $l->{body_len};
            $pos = $l->{body_start} + $b;
        }
        push @cuts, $pos;
    }
    my @out;
    my $prev = 0;
    for my $i (0 .. $#vals) {
        my $end = $i < $#vals ? $cuts[$i] : length $req;
        $end = $prev if $end < $prev;
        my $p = { value => substr($req, $prev, $end - $prev) };
        $p->{delay_before} = $packets->[$i]{delay_before}
            if ref $packets->[$i] eq 'HASH' && defined $packets->[$i]{delay_before};
        push @out, $p;
        $prev = $end;
    }
    return \@out;
}

# Send packets on a new connection and read until the server closes it.
#   packets      => [ { value => bytes, delay_before => secs }, ... ]
#   addr, port, timeout (idle seconds), middle_delay, shutdown (how, or undef),
#   server_alive (code: false stops the connect retries)
# Returns { raw => bytes read, timed_out => 0|1, error => message|undef }.
sub send_request {
    my (%o) = @_;
    my @queue = @{ $o{packets} };
    my $timeout = $o{timeout} // 3;

    my $sock;
    my $err;
    for my $try (1 .. 20) {
        $sock = IO::Socket::INET->new(PeerAddr => $o{addr}, PeerPort => $o{port},
                                      Proto => 'tcp', Timeout => $timeout);
        last if $sock;
        $err = $!;
        last if $o{no_retry} || ($o{server_alive} && !$o{server_alive}->());
        sleep 0.005 * $try;
    }
    return { raw => '', timed_out => 0,
             error => "Can't connect to $o{addr}:$o{port}: $err" } unless $sock;

    local $SIG{PIPE} = 'IGNORE';
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);

    my $cur = shift @queue;
    my $wbuf = $cur->{value};
    my $woff = 0;
    my $writing = 1;
    my $resp = '';
    my $timed_out = 0;
    my $write_error;

    while (1) {
        my ($r, $w) = IO::Select->select($sel, $writing ? $sel : undef, undef, $timeout);
        if (!$r && !$w) {
            next if $!{EINTR};
            $timed_out = 1;
            last;
        }

        if ($w && @$w) {
          WRITE: while ($writing) {
                if ($woff < length $wbuf) {
                    my $n = syswrite($sock, $wbuf, length($wbuf) - $woff, $woff);
                    if (!defined $n) {
                        last WRITE if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
                        $write_error = "write failed: $!";
                        $writing = 0;
                        last WRITE;
                    }
                    $woff += $n;
                    next WRITE;
                }
                $cur = shift @queue;
                if (!$cur) {
                    $writing = 0;
                    if (defined $o{shutdown}) {
                        shutdown($sock, $o{shutdown} =~ /^\d+$/ ? $o{shutdown} : 1);
                    }
                    last WRITE;
                }
                my $delay = $cur->{delay_before} // $o{middle_delay};
                sleep $delay if $delay;
                ($wbuf, $woff) = ($cur->{value}, 0);
            }
        }

        if ($r && @$r) {
            my $n = sysread($sock, my $buf, 65536);
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
                last;    # connection reset: keep what we have
            }
            last if $n == 0;
            $resp .= $buf;
        }
    }
    close $sock;
    return { raw => $resp, timed_out => $timed_out, error => undef,
             write_error => $write_error };
}

# Parse one response from the front of $raw.  Returns a hash:
#   code, message, protocol, headers (HTTP::Headers), raw_headers (status line
#   and header lines, as received), content, left (bytes after this
#   response), error (malformed chunked body), truncated (short body).
sub parse_response {
    my ($raw, $is_head) = @_;
    my %res = (headers => HTTP::Headers->new, content => '', raw_headers => '');
    my $rest;
    if ($raw =~ /\A(.*?\r?\n)\r?\n/s) {
        $res{raw_headers} = $1;
        $rest = substr $raw, $+[0];
    } else {
        $res{raw_headers} = $raw;
        $rest = '';
    }

    my ($status, @lines) = split /\r?\n/, $res{raw_headers};
    $status //= '';
    if ($status =~ m{^(HTTP/\d+(?:\.\d+)?)\s+(\d{3})(?:\s+(.*))?$}) {
        @res{qw(protocol code message)} = ($1, $2, $3 // '');
    }
    for my $l (@lines) {
        next unless $l =~ /^([^:\s]+)\s*:\s*(.*?)\s*$/;
        $res{headers}->push_header($1 => $2);
    }

    my $code = $res{code} // 0;
    if ($code == 101 || $code == 304) {
        $res{content} = $rest;
        return \%res;
    }
    if ($is_head) {
        $res{left} = $rest if length $rest;
        return \%res;
    }

    my $te = $res{headers}->header('Transfer-Encoding');
    my $len = $res{headers}->header('Content-Length');
    if (defined $te && $te =~ /\bchunked\b/i) {
        my $decoded = '';
        pos($rest) = 0;
        while (1) {
            if ($rest =~ /\G[ \t]*([0-9A-Fa-f]+)[^\r\n]*\r\n/gc) {
                my $size = hex $1;
                if ($size == 0) {
                    $rest =~ /\G(?:[^\r\n]+\r\n)*\r\n/gc
                        or do { $res{error} = 'invalid chunked data received (bad last chunk)'; last };
                    my $p = pos $rest;
                    $res{left} = substr $rest, $p if $p < length $rest;
                    last;
                }
                my $p = pos $rest;
                if (length($rest) - $p < $size) {
                    $decoded .= substr $rest, $p;
                    $res{error} = 'invalid chunked data received (not enough octets for the data section)';
                    last;
                }
                $decoded .= substr $rest, $p, $size;
                pos($rest) = $p + $size;
                unless ($rest =~ /\G\r\n/gc) {
                    $res{error} = 'invalid chunked data received (expected CRLF)';
                    last;
                }
            } elsif ((pos($rest) // 0) < length $rest) {
                $res{error} = 'invalid chunked body received: '
                    . substr($rest, pos($rest) // 0, 40);
                last;
            } else {
                $res{error} = 'no last chunk found';
                last;
            }
        }
        $res{content} = $decoded;
    } elsif (defined $len && $len =~ /^\s*(\d+)/) {
        $len = $1;
        if (length $rest < $len) {
            $res{content} = $rest;
            $res{truncated} = "$len bytes expected, but got " . length $rest;
        } else {
            $res{content} = substr $rest, 0, $len;
            $res{left} = substr $rest, $len if length $rest > $len;
        }
    } else {
        $res{content} = $rest;
    }
    return \%res;
}

1;
