package Test::Nginx::Socket;

# Fallback Test::Nginx::Socket for machines without the real one (CPAN's
# Test::Nginx).  Suites say, as usual:
#
#     use Test::Nginx::Socket 'no_plan';
#     ... run_tests(); __DATA__ ...
#
# and run with `prove -I t/lib -r t/`.  If another Test/Nginx/Socket.pm is
# found anywhere else on @INC (the real Test::Nginx), that one is loaded
# instead, so an installed Test::Nginx always wins, whatever the order of
# @INC.  Set TEST_NGINX_BUNDLED=1 to force the project's runner.
#
# The runner itself lives in Test::Nginx::Lite (see docs/testing.md).

use strict;
use warnings;
use Cwd ();
use File::Spec ();

our $IsBundled;

BEGIN {
    my $mine = Cwd::abs_path(__FILE__) // File::Spec->rel2abs(__FILE__);
    (my $my_root = $mine) =~ s{/Test/Nginx/Socket\.pm\z}{};
    my $real;
    unless ($ENV{TEST_NGINX_BUNDLED}) {
        for my $dir (@INC) {
            next if ref $dir;
            my $cand = "$dir/Test/Nginx/Socket.pm";
            next unless -f $cand;
            my $abs = Cwd::abs_path($cand) // next;
            next if $abs eq $mine;
            $real = $abs;
            last;
        }
    }

    if ($real) {
        # hand over to the real module; our directory is hidden meanwhile so
        # that its own helpers (Test::Nginx::Util, ...) come from its tree
        local @INC = grep { ref $_ || (Cwd::abs_path($_) // '') ne $my_root } @INC;
        delete $INC{'Test/Nginx/Socket.pm'};
        require Test::Nginx::Socket;
        $IsBundled = 0;
    } else {
        require Test::Nginx::Lite;
        our @ISA = ('Test::Nginx::Lite');
        $IsBundled = 1;
    }
}

1;
