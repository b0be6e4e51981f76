#!/bin/bash
# The manual pages are clean mdoc and document exactly the options the
# binaries accept: every option in --help has an entry in OPTIONS and appears
# in SYNOPSIS, and neither names an option that --help does not know.
#
# Usage: man_pages.sh BUILD_DIR
# Exit 0 when everything holds, 1 otherwise (every problem is printed).
set -u

build_dir=${1:?usage: man_pages.sh BUILD_DIR}
source_dir=$(cd "$(dirname "$0")/../.." && pwd)
man_dir=$source_dir/man
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# Options in --help, one line per option with its aliases: on each line that
# starts with an option, the leading tokens that look like options
# ("-f, --foreground" -> "-f --foreground"; "--user NAME" -> "--user").
help_option_lines() {
    awk '
        /^[ \t]+-/ {
            line = ""
            for (i = 1; i <= NF; i++) {
                t = $i
                sub(/,$/, "", t)
                sub(/=.*/, "", t)
                if (t !~ /^-/) break
                line = line (line == "" ? "" : " ") t
            }
            print line
        }'
}

# Options given an entry in OPTIONS: the arguments of Fl on the .It lines of
# that section, with mdoc escapes removed ("Fl \-foreground" -> --foreground).
page_option_entries() {
    awk '
        /^\.Sh / { in_options = ($0 == ".Sh OPTIONS"); next }
        in_options && /^\.It / {
            for (i = 2; i < NF; i++)
                if ($i == "Fl") {
                    t = $(i + 1)
                    gsub(/\\/, "", t)
                    print "-" t
                }
        }' "$1"
}

# Options in SYNOPSIS: "Fl \-name" is --name, "Fl fhVv" is -f -h -V -v.
page_synopsis_options() {
    awk '
        /^\.Sh / { in_synopsis = ($0 == ".Sh SYNOPSIS"); next }
        in_synopsis {
            for (i = 1; i < NF; i++)
                if ($i == "Fl") {
                    t = $(i + 1)
                    gsub(/\\/, "", t)
                    if (t ~ /^-/)
                        print "-" t
                    else
                        for (k = 1; k <= length(t); k++)
                            print "-" substr(t, k, 1)
                }
        }' "$1"
}

# Prints the members of set $2 missing from set $1 (both newline-separated).
missing_from() {
    comm -13 <(printf '%s\n' "$1" | sort -u) <(printf '%s\n' "$2" | sort -u) | grep -v '^$'
}

# --- every page lints clean -------------------------------------------------
if ! command -v mandoc >/dev/null; then
    fail "mandoc is not installed (apt-get install mandoc): cannot lint the pages"
fi
for page in wg-dynamic-server.8 wg-dynamic-client.8 wg-dynamic.7; do
    path=$man_dir/$page
    if [[ ! -f $path ]]; then
        fail "$page is missing from $man_dir"
        continue
    fi
    if command -v mandoc >/dev/null; then
        lint=$(mandoc -Tlint -W warning "$path" 2>&1)
        if [[ -n $lint ]]; then
            fail "mandoc -Tlint -W warning $page reports:"
            printf '%s\n' "$lint" >&2
        fi
    fi
done

# --- every page has the sections an operator looks for ----------------------
require_sections() {
    local page=$1
    shift
    [[ -f $man_dir/$page ]] || return 0 # already reported above
    local section
    for section in "$@"; do
        grep -qxF ".Sh $section" "$man_dir/$page" || fail "$page has no section $section"
    done
    for reference in ".Xr wg 8" ".Xr wg-quick 8"; do
        grep -qF "$reference" "$man_dir/$page" || fail "$page does not refer to ${reference#.Xr }"
    done
}
daemon_sections=(NAME SYNOPSIS DESCRIPTION OPTIONS FILES "EXIT STATUS" EXAMPLES "SEE ALSO")
require_sections wg-dynamic-server.8 "${daemon_sections[@]}"
require_sections wg-dynamic-client.8 "${daemon_sections[@]}"
require_sections wg-dynamic.7 NAME DESCRIPTION EXAMPLES "SEE ALSO" "SECURITY CONSIDERATIONS"

# --- options: --help against the page, both ways ----------------------------
for program in wg-dynamic-server wg-dynamic-client; do
    binary=$build_dir/$program
    page=$man_dir/$program.8
    if [[ ! -x $binary ]]; then
        fail "$binary does not exist: build the target $program first"
        continue
    fi
    [[ -f $page ]] || continue # already reported above

    if ! help=$("$binary" --help); then
        fail "$program --help exits non-zero"
        continue
    fi
    option_lines=$(printf '%s\n' "$help" | help_option_lines)
    accepted=$(printf '%s\n' "$option_lines" | tr ' ' '\n')
    documented=$(page_option_entries "$page")
    synopsis=$(page_synopsis_options "$page")

    if [[ -z $accepted ]]; then
        fail "$program --help lists no options; cannot compare"
        continue
    fi
    if [[ -z $documented ]]; then
        fail "$program.8 has no option entries (.It Fl ...) in its OPTIONS section"
        continue
    fi

    if undocumented=$(missing_from "$documented" "$accepted"); then
        fail "$program accepts options that $program.8 OPTIONS does not document:" "${undocumented//$'\n'/ }"
    fi
    if unknown=$(missing_from "$accepted" "$documented"); then
        fail "$program.8 OPTIONS documents options that $program --help does not list:" "${unknown//$'\n'/ }"
    fi
    # SYNOPSIS may name an option by any of its aliases (-f for --foreground).
    absent=()
    while read -r -a aliases; do
        found=false
        for alias in "${aliases[@]}"; do
            grep -qxF -e "$alias" <<<"$synopsis" && found=true
        done
        $found || absent+=("${aliases[*]}")
    done <<<"$option_lines"
    if ((${#absent[@]} > 0)); then
        fail "$program.8 SYNOPSIS lacks options that $program accepts:" "${absent[@]/%/;}"
    fi
    if extra=$(missing_from "$accepted" "$synopsis"); then
        fail "$program.8 SYNOPSIS names options that $program --help does not list:" "${extra//$'\n'/ }"
    fi
    echo "$program: $(printf '%s\n' "$accepted" | sort -u | tr '\n' ' ')documented"
done

if ((failures > 0)); then
    echo "$failures problem(s) with the manual pages" >&2
    exit 1
fi
echo "manual pages: lint clean, options match the binaries"
exit 0
