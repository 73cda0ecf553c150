#!/bin/sh
# Builds one libFuzzer target (with AddressSanitizer) as a single Swift module:
#   Fuzz/build.sh OUTPUT FUZZ_DIR SOURCE...
# SOURCE is a Sources/ module folder (all its files) or one file. Sources of several modules
# are copied with their `import Switchyard…` lines removed, since they become one module;
# CLinuxShims is made importable with a module map and its C file is compiled in; the system
# libraries' module maps (CNGHTTP2) are found in Sources.
set -e
output=$1; dir=$2; shift 2
work=.build/fuzz/src-$dir
rm -rf "$work"; mkdir -p "$work/shims"
for source in "$@"; do
    if [ -d "$source" ]; then files="$source/*.swift"; else files=$source; fi
    for file in $files; do
        sed -e '/^import Switchyard/d' -e '/^@testable import/d' "$file" > "$work/$(basename "$(dirname "$file")")-$(basename "$file")"
    done
done
cat > "$work/shims/module.modulemap" <<MAP
module CLinuxShims {
    header "$PWD/Sources/CLinuxShims/include/CLinuxShims.h"
    export *
}
MAP
clang -c -O1 -fsanitize=address -I Sources/CLinuxShims/include Sources/CLinuxShims/shims.c -o "$work/shims.o"
swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name "$dir" -I "$work/shims" -I Sources/CNGHTTP2 \
    "$work"/*.swift Fuzz/"$dir"/*.swift "$work/shims.o" -o "$output" 2>&1 | grep -v "ld.gold: warning" || true
test -x "$output"
