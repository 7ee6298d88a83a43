#!/usr/bin/env bash
# Man pages from the one source kept for them, the doc comments of
# include/cvmconv.h: one cvmconv_NAME(3) per public function (its /** ... */
# comment and the prototype after it) and cvmconv(7) (the header's opening
# comment, then the list of functions).
#
#   tools/gen-man.sh HEADER OUTDIR VERSION
#
# Writes OUTDIR/man3/cvmconv_*.3 and OUTDIR/man7/cvmconv.7. Exit 1 when a
# CVMCONV_API function has no doc comment.
set -euo pipefail

header=${1:?usage: gen-man.sh HEADER OUTDIR VERSION}
out=${2:?usage: gen-man.sh HEADER OUTDIR VERSION}
version=${3:?usage: gen-man.sh HEADER OUTDIR VERSION}
mkdir -p "$out/man3" "$out/man7"
rm -f "$out"/man3/cvmconv_*.3

awk -v out="$out" -v version="$version" '
function esc(s,   out, w) {
	gsub(/\\/, "\\\\e", s)
	sub(/^[ \t]+/, "", s)
	# @param: the parameter in italics
	out = ""
	while (match(s, /@[a-z_]+/)) {
		w = substr(s, RSTART + 1, RLENGTH - 1)
		out = out substr(s, 1, RSTART - 1) "\\fI" w "\\fR"
		s = substr(s, RSTART + RLENGTH)
	}
	s = out s
	if (s ~ /^[.\x27]/)
		s = "\\&" s
	return s
}
function flush_page(   f, i, sect, line, cut, rest) {
	f = out "/man3/" name ".3"
	# NAME: the first sentence of the first paragraph; the rest of it
	# opens the DESCRIPTION
	rest = ""
	cut = match(summary, /[.:] /)
	if (cut) {
		rest = substr(summary, cut + 2)
		summary = substr(summary, 1, cut - 1)
	}
	sub(/[.:]$/, "", summary)
	print ".TH " toupper(name) " 3 \"\" \"cvmconv " version "\" \"cvmconv manual\"" > f
	print ".SH NAME" > f
	print name " \\- " esc(summary) > f
	print ".SH SYNOPSIS" > f
	print ".nf" > f
	print ".B #include <cvmconv.h>" > f
	print ".PP" > f
	print esc(proto) > f
	print ".fi" > f
	sect = ""
	if (rest != "") {
		print ".SH DESCRIPTION" > f
		print esc(rest) > f
		sect = "desc"
	}
	for (i = 1; i <= n; i++) {
		line = body[i]
		if (line ~ /^Return:/) {
			print ".SH RETURN VALUE" > f
			sub(/^Return: */, "", line)
			sect = "ret"
		} else if (line ~ /^Thread safety:/) {
			print ".SH THREAD SAFETY" > f
			sub(/^Thread safety: */, "", line)
			sect = "ts"
		} else if (sect == "") {
			print ".SH DESCRIPTION" > f
			sect = "desc"
		}
		if (line == "")
			print ".PP" > f
		else if (line ~ /^@[a-z_]+:/) {
			print ".TP" > f
			p = index(line, ":")
			print ".I " substr(line, 2, p - 2) > f
			print esc(substr(line, p + 2)) > f
		} else
			print esc(line) > f
	}
	print ".SH SEE ALSO" > f
	print ".BR cvmconv (7)" > f
	close(f)
	names[++nnames] = name
	sums[nnames] = summary
}
# the opening comment: cvmconv(7)
NR > 1 && !intro_done && /^ \*\/$/ { intro_done = 1; next }
NR > 1 && !intro_done { l = $0; sub(/^ \* ?/, "", l); if (l == "*") l = ""; intro[++nintro] = l; next }
/^\/\*\*$/ { indoc = 1; n = 0; summary = ""; first = 1; next }
indoc && /^ \*\/$/ { indoc = 0; want = 1; proto = ""; next }
indoc {
	l = $0
	sub(/^ \* ?/, "", l)
	if (l == "*")
		l = ""
	if (first) {
		# "name() - summary", possibly continued on the next lines
		p = index(l, " - ")
		summary = substr(l, p + 3)
		first = 0
		insum = 1
		next
	}
	if (insum && l != "" && l !~ /^@/ && l !~ /^(Return|Thread safety):/ && n == 0) {
		summary = summary " " l
		next
	}
	insum = 0
	body[++n] = l
	next
}
want {
	proto = proto (proto == "" ? "" : "\n") $0
	if ($0 ~ /;/) {
		want = 0
		if (proto ~ /^CVMCONV_API/) {
			sub(/^CVMCONV_API /, "", proto)
			gsub(/\t+/, "    ", proto)
			m = proto
			sub(/\(.*/, "", m)
			sub(/.*[ *]/, "", m)
			name = m
			flush_page()
		}
	}
	next
}
/^CVMCONV_API/ {
	m = $0
	sub(/\(.*/, "", m)
	sub(/.*[ *]/, "", m)
	print "gen-man.sh: " m " has no doc comment" > "/dev/stderr"
	bad = 1
}
END {
	f = out "/man7/cvmconv.7"
	print ".TH CVMCONV 7 \"\" \"cvmconv " version "\" \"cvmconv manual\"" > f
	print ".SH NAME" > f
	print "cvmconv \\- host-side private/shared memory conversions for confidential VMs" > f
	print ".SH DESCRIPTION" > f
	for (i = 2; i <= nintro; i++)
		print (intro[i] == "" ? ".PP" : esc(intro[i])) > f
	print ".PP" > f
	print "The full semantics, the threading rules and the errors are in the" > f
	print "project'"'"'s docs/semantics.md and docs/api/." > f
	print ".SH FUNCTIONS" > f
	for (i = 1; i <= nnames; i++) {
		print ".TP" > f
		print ".BR " names[i] " (3)" > f
		print esc(sums[i]) > f
	}
	close(f)
	exit bad
}
' "$header"
