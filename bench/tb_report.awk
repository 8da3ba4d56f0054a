#   tb_report.awk - turns one benchmark's samples into its results.
#
#   usage: awk -F '\t' -f tb_report.awk -v bench=NAME -v json=FILE
#              -v md=FILE -v rows=FILE [-v key=value ...] SPEC SAMPLES
#
#   SPEC is bench/run's table of series and checks (tab-separated):
#     unit    BENCH UNIT
#     series  BENCH SERIES ROLE DESCRIPTION     (ROLE: troupe | reference)
#     cmp     BENCH A B OP LIMIT KIND           (A/B OP LIMIT; KIND: target |
#                                                stretch | info, OP/LIMIT "-"
#                                                for info)
#     value   BENCH SERIES OP LIMIT KIND        (median OP LIMIT)
#   SAMPLES holds the programs' "SAMPLE bench series value" lines, their
#   "NOTE bench text" lines (figures a program worked out over all its
#   measurements, listed as they are) and "DIAG series text" lines from
#   bench/run's counters; other lines are ignored. Writes one JSON record
#   (one line) to `json`, the rows of the summary table to `rows` and the
#   benchmark's section to `md`.
#   Other variables: date, cpu, cores, kernel, load (cores used by other
#   processes during the run), reps, commands (lines separated by "|").
#   Written for mawk (Debian's default awk): no gawk extensions, and no
#   space between a user function's name and "(" in calls, which awk
#   does not allow.

#   Units of spawn_10k's figures are in their names.
function unit_of(s) {
    if (s ~ /_s$/) return "s"
    if (s ~ /_kib/) return "KiB"
    return unit
}

function jstr(s) {
    gsub (/\\/, "\\\\", s)
    gsub (/"/, "\\\"", s)
    gsub (/\t/, " ", s)
    return "\"" s "\""
}

function num(v) {
    return sprintf ("%.6g", v)
}

#   A figure for people: thousands separated, or a few significant digits.
function human(v,    s, out, neg) {
    if (v == "")
        return "—"
    neg = v < 0
    if (neg)
        v = -v
    if (v >= 10000) {
        s = sprintf ("%.0f", v)
        out = ""
        while (length (s) > 3) {
            out = "," substr (s, length (s) - 2) out
            s = substr (s, 1, length (s) - 3)
        }
        s = s out
    }
    else if (v >= 100)
        s = sprintf ("%.0f", v)
    else if (v >= 10)
        s = sprintf ("%.1f", v)
    else
        s = sprintf ("%.3g", v)
    return (neg? "-": "") s
}

#   Sorts the samples of series s into sorted[1..n]; returns n.
function sort_samples(s,    n, i, j, t) {
    n = count [s]
    for (i = 1; i <= n; i++)
        sorted [i] = sample [s, i]
    for (i = 2; i <= n; i++) {
        t = sorted [i]
        for (j = i - 1; j >= 1 && sorted [j] > t; j--)
            sorted [j + 1] = sorted [j]
        sorted [j + 1] = t
    }
    return n
}

function stats(s,    n) {
    n = sort_samples(s)
    if (n == 0) {
        med [s] = lo [s] = hi [s] = ""
        return
    }
    med [s] = n % 2? sorted [(n + 1) / 2]: (sorted [n / 2] + sorted [n / 2 + 1]) / 2
    lo [s] = sorted [1]
    hi [s] = sorted [n]
}

function spread(s) {
    if (med [s] == "" || med [s] == 0)
        return ""
    return (hi [s] - lo [s]) / med [s] * 100
}

function check(value, op, limit) {
    if (value == "")
        return ""
    if (op == ">=") return value >= limit
    if (op == ">")  return value > limit
    if (op == "<=") return value <= limit
    if (op == "<")  return value < limit
    return ""
}

function series_json(s,    i, out) {
    out = "{\"median\":" num(med [s]) ",\"min\":" num(lo [s]) ",\"max\":" num(hi [s])
    out = out ",\"spread_pct\":" num(spread(s)) ",\"samples\":["
    for (i = 1; i <= count [s]; i++)
        out = out (i > 1? ",": "") num(sample [s, i])
    return out "],\"description\":" jstr(desc [s]) "}"
}

function met_word(m, kind) {
    if (kind == "info")
        return "—"
    if (m == "")
        return "not measured"
    return m? "yes": "**no**"
}

#   ---------------------------------------------------------------------
#   The spec (first file)

FNR == NR {
    if ($2 != bench)
        next
    if ($1 == "unit")
        unit = $3
    else if ($1 == "series") {
        order [++nseries] = $3
        role [$3] = $4
        desc [$3] = $5
    }
    else if ($1 == "cmp") {
        ncmp++
        cmp_a [ncmp] = $3; cmp_b [ncmp] = $4
        cmp_op [ncmp] = $5; cmp_lim [ncmp] = $6; cmp_kind [ncmp] = $7
    }
    else if ($1 == "value") {
        nval++
        val_s [nval] = $3; val_op [nval] = $4
        val_lim [nval] = $5; val_kind [nval] = $6
    }
    next
}

#   ---------------------------------------------------------------------
#   The samples

{
    n = split ($0, f, " ")
    if (f [1] == "SAMPLE" && f [2] == bench && n == 4) {
        s = f [3]
        if (!(s in role)) {
            order [++nseries] = s
            role [s] = "troupe"
            desc [s] = "(not described in the spec)"
        }
        sample [s, ++count [s]] = f [4] + 0
    }
    else if (f [1] == "DIAG") {
        diag [++ndiag] = substr ($0, 6)
    }
    else if (f [1] == "NOTE" && f [2] == bench && n > 2) {
        note [++nnote] = substr ($0, length ("NOTE " bench " ") + 1)
    }
}

END {
    for (i = 1; i <= nseries; i++)
        stats(order [i])

    #   JSON record: one line.
    out = "{\"name\":" jstr(bench) ",\"unit\":" jstr(unit) ",\"repeats\":" (reps + 0)
    out = out ",\"date\":" jstr(date)
    out = out ",\"machine\":{\"cpu\":" jstr(cpu) ",\"cores\":" (cores + 0)
    out = out ",\"kernel\":" jstr(kernel) ",\"date\":" jstr(date)
    out = out ",\"background_load_cores\":" num(load) "}"
    for (r = 1; r <= 2; r++) {
        want = r == 1? "troupe": "reference"
        out = out ",\"" (r == 1? "troupe": "references") "\":{"
        first = 1
        for (i = 1; i <= nseries; i++) {
            s = order [i]
            if (role [s] != want)
                continue
            out = out (first? "": ",") jstr(s) ":" series_json(s)
            first = 0
        }
        out = out "}"
    }
    out = out ",\"ratios\":{"
    for (c = 1; c <= ncmp; c++) {
        a = cmp_a [c]; b = cmp_b [c]
        ratio [c] = med [a] != "" && med [b] != "" && med [b] > 0? med [a] / med [b]: ""
        out = out (c > 1? ",": "") jstr(a "/" b) ":" (ratio [c] == ""? "null": num(ratio [c]))
    }
    out = out "},\"targets\":["
    first = 1
    for (c = 1; c <= ncmp; c++) {
        if (cmp_kind [c] == "info")
            continue
        m = check(ratio [c], cmp_op [c], cmp_lim [c])
        out = out (first? "": ",") "{\"check\":" jstr(cmp_a [c] "/" cmp_b [c] " " cmp_op [c] " " cmp_lim [c])
        out = out ",\"kind\":" jstr(cmp_kind [c]) ",\"value\":" (ratio [c] == ""? "null": num(ratio [c]))
        out = out ",\"met\":" (m == ""? "null": m? "true": "false") "}"
        first = 0
    }
    for (v = 1; v <= nval; v++) {
        s = val_s [v]
        m = check(med [s], val_op [v], val_lim [v])
        out = out (first? "": ",") "{\"check\":" jstr(s " " val_op [v] " " val_lim [v])
        out = out ",\"kind\":" jstr(val_kind [v]) ",\"value\":" (med [s] == ""? "null": num(med [s]))
        out = out ",\"met\":" (m == ""? "null": m? "true": "false") "}"
        first = 0
    }
    out = out "],\"notes\":["
    for (d = 1; d <= nnote; d++)
        out = out (d > 1? ",": "") jstr(note [d])
    out = out "],\"diagnostics\":["
    for (d = 1; d <= ndiag; d++)
        out = out (d > 1? ",": "") jstr(diag [d])
    out = out "],\"commands\":["
    nc = split (commands, cmd, "|")
    for (c = 1; c <= nc; c++)
        out = out (c > 1? ",": "") jstr(cmd [c])
    out = out "]}"
    print out > json

    #   Rows of the summary table.
    for (c = 1; c <= ncmp; c++) {
        a = cmp_a [c]; b = cmp_b [c]
        m = check(ratio [c], cmp_op [c], cmp_lim [c])
        if (cmp_kind [c] == "info")
            target = "—"
        else
            target = (cmp_kind [c] == "stretch"? "stretch: ": "") cmp_op [c] " " cmp_lim [c]
        printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", bench, a,
               human(med [a]) " " unit, b, human(med [b]) " " unit,
               ratio [c] == ""? "—": sprintf ("%.2f", ratio [c]), target,
               met_word(m, cmp_kind [c]) > rows
    }
    for (v = 1; v <= nval; v++) {
        s = val_s [v]
        m = check(med [s], val_op [v], val_lim [v])
        printf "| %s | %s | %s | — | — | — | %s %s | %s |\n", bench, s,
               human(med [s]) " " unit_of(s), val_op [v], val_lim [v] " " unit_of(s),
               met_word(m, val_kind [v]) > rows
    }

    #   The benchmark's section: every series with its spread.
    printf "| series | what it is | median | min | max | spread |\n" > md
    printf "|---|---|---:|---:|---:|---:|\n" > md
    for (i = 1; i <= nseries; i++) {
        s = order [i]
        printf "| %s%s | %s | %s | %s | %s | %s |\n", s,
               role [s] == "reference"? " (ref)": "", desc [s],
               human(med [s]), human(lo [s]), human(hi [s]),
               spread(s) == ""? "—": sprintf ("%.0f%%", spread(s)) > md
    }
    if (nnote) {
        printf "\nFrom the same measurements, as the programs reported them:\n\n" > md
        for (d = 1; d <= nnote; d++)
            printf "- %s\n", note [d] > md
    }
    if (ndiag) {
        printf "\nCounters from one extra run of each series under `perf stat` (same build, same run):\n\n" > md
        for (d = 1; d <= ndiag; d++)
            printf "- %s\n", diag [d] > md
    }
}
