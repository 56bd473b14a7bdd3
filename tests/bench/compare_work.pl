# compare_work.pl - the perl workload of tests/bench/compare.py.
#
# Hash and string work, repeated ROUNDS times (argv[0], default 20): a hash
# of records keyed by built strings, string concatenation, split, join,
# substitution and sprintf, sorting by value, and deleting half the keys so
# the live set changes. Prints one checksum line (deterministic).
use strict;
use warnings;

my $rounds = @ARGV ? $ARGV[0] : 20;
my $total = 0;
for my $r (1 .. $rounds) {
    my %h;
    for my $i (1 .. 20000) {
        my $k = sprintf("key-%d-%05d", $r, $i);
        $h{$k} = join(",", $i, $i * 3 % 17, "v" . ($i % 101), lc($k));
    }
    my @sorted = sort { $h{$a} cmp $h{$b} } keys %h;
    my %count;
    for my $k (@sorted) {
        my @f = split /,/, $h{$k};
        (my $s = $f[3]) =~ s/key/k/;
        $count{$f[2]} .= substr($s, 0, 4);
    }
    delete $h{$_} for grep { /[02468]$/ } keys %h;
    $total += scalar(keys %h) + length(join("", map { $count{$_} } sort keys %count));
}
print "perl checksum $total\n";
