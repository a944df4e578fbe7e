#!/bin/sh
# Every provider section the Rust code cites (`§4`, `§1.9`) must be a heading of the same number
# (`## §4 …`, `### §1.9 …`) in the provider page it refers to: docs/providers/amocrm.md for the
# CRM side, docs/providers/channels.md for everything else. Lists each cited number with its
# count and exits 1 naming every citation without a heading.
#
# Which page a citation refers to: a line that names amoCRM, amojo or the Chats API cites
# amocrm.md; otherwise a line naming channels.md or the Bot API cites channels.md; otherwise the
# file decides (chatter-crm, the amoCRM fake and its tests, chatter-core's crm/ → amocrm.md).
#
# Usage: docs/providers/check-refs.sh   (from anywhere; POSIX sh, grep, sed, sort)

set -u
root=$(cd "$(dirname "$0")/../.." && pwd) || exit 2
cd "$root" || exit 2
tab=$(printf '\t')

page_of() { # file, line text
    if printf '%s\n' "$2" | grep -qiE 'amocrm|amojo|chats api'; then
        echo amocrm
    elif printf '%s\n' "$2" | grep -qE 'channels\.md|Bot API'; then
        echo channels
    else
        case $1 in
        crates/chatter-crm/* | crates/chatter-fakes/src/amocrm/* | \
            crates/chatter-fakes/tests/amocrm* | crates/chatter-core/src/crm/*)
            echo amocrm ;;
        *) echo channels ;;
        esac
    fi
}

# One line per citation: page, major, minor (0 for none), file:line.
hits=$(grep -rnE '§[0-9]' crates --include='*.rs' | while IFS= read -r hit; do
    file=${hit%%:*}
    rest=${hit#*:}
    line=${rest%%:*}
    text=${rest#*:}
    page=$(page_of "$file" "$text")
    printf '%s\n' "$text" | grep -oE '§[0-9]+(\.[0-9]+)?' | sed 's/^§//' |
        while IFS= read -r num; do
            case $num in
            *.*) major=${num%%.*} minor=${num#*.} ;;
            *) major=$num minor=0 ;;
            esac
            printf '%s\t%s\t%s\t%s\n' "$page" "$major" "$minor" "$file:$line"
        done
done)

if [ -z "$hits" ]; then
    echo "no § citations found under crates/" >&2
    exit 2
fi

status=0
pairs=$(printf '%s\n' "$hits" | cut -f1-3 | sort -t "$tab" -k1,1 -k2,2n -k3,3n | uniq -c)
total=0
printf '%s\n' "$pairs" | {
    while read -r count page major minor; do
        if [ "$minor" = 0 ]; then num=$major; else num=$major.$minor; fi
        doc=docs/providers/$page.md
        if grep -qE "^#{2,4} §$(printf '%s' "$num" | sed 's/\./\\./g')( |\$)" "$doc"; then
            printf 'ok       %-12s §%-6s %3s citation(s)\n' "$page.md" "$num" "$count"
        else
            printf 'MISSING  %-12s §%-6s %3s citation(s):\n' "$page.md" "$num" "$count"
            printf '%s\n' "$hits" | grep -E "^$page$tab$major$tab$minor$tab" | cut -f4 |
                sed 's/^/           /'
            status=1
        fi
        total=$((total + count))
    done
    echo "$total citations checked"
    exit $status
}
