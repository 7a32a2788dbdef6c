#!/bin/sh
# shim/tests/check_syms.sh LIB - build-time check of libsluice.so's exports:
# every GATE/OWN entry of shim/syms.def is exported, nothing else named cu*
# is, dlsym is exported under both glibc versions, and the library needs no
# glibc symbol version newer than the baseline below (old-glibc images).
set -eu
# sort and comm order by byte, whatever the host's locale
export LC_ALL=C
lib=$1
here=$(dirname "$0")
def=$here/../syms.def
fail=0
want=$(grep -E '^X\(' "$def" | grep -E ', (GATE|OWN),' | sed -E 's/^X\(([A-Za-z0-9_]+),.*/\1/' | sort)
have=$(nm -D --defined-only "$lib" | awk '{print $3}' | sed 's/@.*//' | grep '^cu' | sort)
missing=$(printf '%s\n' "$want" | comm -23 - "$(printf '%s\n' "$have" > "$lib.exports.tmp"; echo "$lib.exports.tmp")")
extra=$(printf '%s\n' "$have" | comm -13 "$(printf '%s\n' "$want" > "$lib.want.tmp"; echo "$lib.want.tmp")" -)
rm -f "$lib.exports.tmp" "$lib.want.tmp"
if [ -n "$missing" ]; then echo "check_syms: table entries without an exported wrapper:" $missing; fail=1; fi
if [ -n "$extra" ]; then echo "check_syms: exported cu* symbols not in the table:" $extra; fail=1; fi
dl=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep '^dlsym@' | sort | tr '\n' ' ')
case "$(uname -m)" in
x86_64)
	[ "$dl" = "dlsym@@GLIBC_2.34 dlsym@GLIBC_2.2.5 " ] || { echo "check_syms: dlsym versions: $dl"; fail=1; }
	baseline=2.17 ;;
*) baseline=2.17 ;;
esac
newest=$(objdump -T "$lib" | grep -o 'GLIBC_[0-9.]*' | grep -v -e 'GLIBC_2.34$' | sed 's/GLIBC_//' | sort -V | tail -1)
# GLIBC_2.34 appears as our own dlsym definition; references must stay old.
refs=$(objdump -T "$lib" | awk '$2 != "g" && /\*UND\*/' | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
if [ -n "$refs" ] && [ "$(printf '%s\n%s\n' "$refs" "$baseline" | sort -V | tail -1)" != "$baseline" ]; then
	echo "check_syms: references need GLIBC_$refs (baseline $baseline):"
	objdump -T "$lib" | grep '\*UND\*' | grep -v -E "GLIBC_(2\.2\.5|2\.3|2\.3\.[0-9]|2\.[4-9]|2\.1[0-7])[^0-9.]" || true
	fail=1
fi
: "$newest"
# No NVML and no context creation in the shim itself (cuda-shim.md §0.8): it
# must not even name NVML, nor reference a context-creating entry point
# (the wrappers it exports forward the application's own calls).
if strings -a "$lib" | grep -qi -e nvml -e 'libnvidia-ml'; then
	echo "check_syms: the shim names NVML"; fail=1
fi
for f in cuCtxCreate cuDevicePrimaryCtxRetain cuCtxSetCurrent; do
	if grep -E "^X\($f[_a-z0-9]*," "$def" >/dev/null; then
		echo "check_syms: the shim resolves $f"; fail=1
	fi
done
[ $fail -eq 0 ] && echo "check_syms: $(printf '%s\n' "$want" | wc -l) wrappers exported, dlsym x2, glibc refs <= $baseline"
exit $fail
