#!/usr/bin/env bash
# Benchmarks rs side by side with NNCP (Debian's package), on this machine,
# in one run, and prints one table: workload, rs median, NNCP median, ratio,
# min-max, runs. Not part of the tests (machines are shared and noisy).
#
#   scripts/bench.sh             every workload (about 12 minutes on 2 cores)
#   scripts/bench.sh w1 w3       only those (w1 w2 w3 w4 w5 w6 w7 scale bulk protect limits)
#
# W1 per-invocation enqueue: 2,000 processes each queue one 1 KiB message.
# W2 removable media: 10,000 queued 1 KiB messages exported, imported
#    (delivered), acknowledgements carried back and applied.
# W3 bulk: one 1 GiB file queued, exported, imported as a bulk transfer
#    over removable media (request, answer, chunks: each step's runs
#    summed); rs in the clear and sealed for an age key at queue time,
#    NNCP (always encrypted), beside a durable 1 GiB write. MB/s, peak RSS;
#    medians of W3_RUNS rounds (3).
# W4 queue at scale (rs only: NNCP has no equivalent operations): list | head,
#    stats, and an eviction, at 10^4, 10^5 and 10^6 queued messages.
# W5 session mode: 10,000 queued 1 KiB messages site -> provider and 10,000
#    back-channel messages provider -> site, over HTTPS with client
#    certificates, through rs-relay serve and through nginx + fcgiwrap
#    (rs-relay cgi), until both sides hold everything and every copy is
#    acknowledged; NNCP online (nncp-daemon, nncp-call, both -autotoss).
# W6 relay: 10,000 queued 1 KiB messages imported at a relay whose 20 rules
#    are all tried on each (the 20th forwards it), and exported onward; beside
#    the same messages imported at a relay without rules and at their final
#    destination (the plain import), in the same run. rs only.
# W7 service point map: 10,000 queued 1 KiB messages site -> provider over
#    an spm:SERVICE route (a 10,000-entry map; the service's primary refuses
#    connections, its backup is rs-relay serve) beside the same messages over
#    a fixed https:// route to the same server, in the same run; and
#    rs-spm resolve and fetch on that map. rs only.
# scale: the provider scaled out: 10,000 queued 1 KiB messages from 6 sites
#    over plain HTTP into 1, 2 and 3 rs-relay serve instances sharing
#    PostgreSQL (duplicate memory) and NATS JetStream (deliveries), beside
#    the same messages into one relay on its file spool. Messages/s, and
#    CPU per message (the relays', and the whole machine's). rs only.
# bulk: one 1 GiB file as a bulk transfer over plain HTTP on 127.0.0.1:
#    rs-send keeping it aside, then one rs-queue flush (the request, its
#    authorization, the upload with tus, the digest checked and the data
#    delivered, the answer), beside a durable copy of the file (dd). rs only.
# protect: protection alone on one envelope: OpenPGP (1 GiB of data) beside
#    gpg, S/MIME (256 MiB: rs holds S/MIME in memory) beside openssl cms.
# limits: the physical limits beside them: process start, a durable small
#    file, sequential disk write, the ciphers and hashes (BENCHMARKS.md).
set -euo pipefail

# These workloads measure data sent as one message, whatever its size:
# spools start with [bulk] threshold raised (the default, 4 KiB, sends
# larger data as a bulk transfer, which W3 and the bulk workload measure).
one_message() { sed -i 's/^threshold = .*/threshold = "1TiB"/' "$1/config.toml"; }
cd "$(dirname "$0")/.."
root=$PWD

need=()
command -v nncp-file >/dev/null || need+=(nncp)
[ -x /usr/bin/time ] || need+=(time)
command -v gpg >/dev/null || need+=(gnupg)
command -v age-keygen >/dev/null || need+=(age)
command -v openssl >/dev/null || need+=(openssl)
command -v python3 >/dev/null || need+=(python3)
command -v nginx >/dev/null || need+=(nginx-light)
command -v fcgiwrap >/dev/null || need+=(fcgiwrap)
[ -d /usr/lib/postgresql ] && command -v psql >/dev/null || need+=(postgresql)
[ -x /usr/sbin/nats-server ] || need+=(nats-server)
if [ ${#need[@]} -gt 0 ]; then
    echo "bench: installing ${need[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
echo "bench: building (release)"
cargo build --release --quiet --workspace --bins --examples
bin=$root/target/release
work=$(mktemp -d /var/tmp/rs-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
which=("$@")
[ ${#which[@]} -gt 0 ] || which=(w1 w2 w3 w4 w5 w6 w7 scale bulk protect limits)
wants() { local w; for w in "${which[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }

table=$work/table
: > "$table"
row() { printf '%s\n' "$*" >> "$table"; }

now_us() { echo "${EPOCHREALTIME/[.,]/}"; }
# stats FILE: "median min max count" of the numbers in FILE.
stats() { sort -g "$1" | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%g %g %g %d\n", m, a[1], a[NR], NR}'; }
# measure FILE CMD...: appends the elapsed seconds of CMD to FILE.
measure() { local f=$1; shift; local t0 t1; t0=$(now_us); "$@" >/dev/null 2>&1; t1=$(now_us); echo "$t0 $t1" | awk '{printf "%.6f\n", ($2-$1)/1e6}' >> "$f"; }
# rss FILE CMD...: runs CMD under GNU time; appends "seconds maxrss_kib" to FILE.
rss() { local f=$1; shift; /usr/bin/time -f "%e %M" -o "$work/time.out" "$@" >/dev/null 2>&1; cat "$work/time.out" >> "$f"; }

# --- NNCP nodes: alice and bob, neighbours, each with its own spool.
nncp_nodes() { # DIR
    local d=$1 n
    mkdir -p "$d"
    for n in alice bob; do nncp-cfgnew -nocomments > "$d/$n.new" 2>/dev/null; done
    field() { grep -m1 "^ *$2:" "$1" | awk '{print $2}'; }
    for pair in "alice bob" "bob alice"; do
        set -- $pair
        local me=$1 peer=$2 f="$d/$1.new" p="$d/$2.new"
        mkdir -p "$d/$me/spool" "$d/$me/incoming"
        cat > "$d/$me.hjson" <<CFG
{
  spool: $d/$me/spool
  log: $d/$me/log
  self: {
    id: $(field "$f" id)
    exchpub: $(field "$f" exchpub)
    exchprv: $(field "$f" exchprv)
    signpub: $(field "$f" signpub)
    signprv: $(field "$f" signprv)
    noiseprv: $(field "$f" noiseprv)
    noisepub: $(field "$f" noisepub)
  }
  neigh: {
    self: {
      id: $(field "$f" id)
      exchpub: $(field "$f" exchpub)
      signpub: $(field "$f" signpub)
      noisepub: $(field "$f" noisepub)
    }
    $peer: {
      id: $(field "$p" id)
      exchpub: $(field "$p" exchpub)
      signpub: $(field "$p" signpub)
      noisepub: $(field "$p" noisepub)
      incoming: $d/$me/incoming
    }
  }
}
CFG
    done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- A CA, and certificates for 127.0.0.1 (server) and a.host (client).
make_pki() { # DIR
    (
        cd "$1"
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=bench-ca -keyout ca.key -out ca.pem 2>/dev/null
        for cn in server a.host; do
            openssl req -newkey rsa:2048 -nodes -subj "/CN=$cn" -keyout "$cn.key" -out "$cn.csr" 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$cn.ext"
            openssl x509 -req -in "$cn.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
                -out "$cn.pem" -extfile "$cn.ext" 2>/dev/null
        done
    )
}

# --- rs sites: a.host (upstream b.hub) and b.hub; $3 extra peer settings.
rs_sites() { # DIR EXTRA_A EXTRA_B
    local d=$1
    RS_SPOOL=$d/a "$bin/rs-queue" init --site a --component a.host >/dev/null && one_message $d/a
    RS_SPOOL=$d/b "$bin/rs-queue" init --site b --component b.hub >/dev/null && one_message $d/b
    printf '\n[[peer]]\nid = "b.hub"\nupstream = true\n%s\n' "${2:-}" >> "$d/a/config.toml"
    printf '\n[[peer]]\nid = "a.host"\n%s\n' "${3:-}" >> "$d/b/config.toml"
}

head -c 1024 /dev/urandom > "$work/1k"

# ------------------------------------------------------------------ W1
if wants w1; then
    # Five runs; the tool that goes first alternates, so that both meet the
    # same disk (fsync latency here drifts by 2x over minutes).
    n=${RS_BENCH_W1:-2000}; runs=5
    echo "W1: $n enqueues per run, $runs runs"
    # Each run has its own directories, removed after the last run: ext4
    # scans past recently deleted inodes when it allocates one, so files
    # created just after a mass deletion cost up to 10x more.
    w1_rs() { local i; for i in $(seq "$n"); do RS_SPOOL=$w/a "$bin/rs-send" --class bench --subclass w1 --file "$work/1k" >/dev/null; done; }
    w1_nncp() { local i; for i in $(seq "$n"); do nncp-file -quiet -cfg "$w/nncp/alice.hjson" "$work/1k" "bob:m$i"; done; }
    per_call() { local t0 t1; t0=$(now_us); "$@"; t1=$(now_us); echo "$t0 $t1 $n" | awk '{printf "%.4f\n", ($2-$1)/1e3/$3}'; }
    for r in $(seq $runs); do
        w=$work/w1-$r; mkdir -p "$w"
        rs_sites "$w"
        nncp_nodes "$w/nncp"
        sync
        if [ $((r % 2)) = 1 ]; then
            per_call w1_rs >> "$work/w1.rs"; per_call w1_nncp >> "$work/w1.nncp"
        else
            per_call w1_nncp >> "$work/w1.nncp"; per_call w1_rs >> "$work/w1.rs"
        fi
    done
    rm -rf "$work"/w1-*
    read -r rm rmin rmax rn < <(stats "$work/w1.rs")
    read -r nm nmin nmax nn < <(stats "$work/w1.nncp")
    row "W1 enqueue 1 KiB, ms per invocation|$rm|$nm|$(awk -v a="$rm" -v b="$nm" 'BEGIN{printf "%.2fx faster", b/a}')|rs $rmin-$rmax, NNCP $nmin-$nmax|$rn"
    row "W1 enqueue 1 KiB, messages/s|$(awk -v a="$rm" 'BEGIN{printf "%.0f", 1000/a}')|$(awk -v b="$nm" 'BEGIN{printf "%.0f", 1000/b}')|$(awk -v a="$rm" -v b="$nm" 'BEGIN{printf "%.2fx", b/a}')| |$rn"
fi

# ------------------------------------------------------------------ W2
if wants w2; then
    n=${RS_BENCH_MESSAGES:-10000}; runs=3
    echo "W2: preparing $n queued messages for each tool"
    mkdir -p "$work/w2p"
    rs_sites "$work/w2p"
    for i in $(seq "$n"); do RS_SPOOL=$work/w2p/a "$bin/rs-send" --class bench --subclass w2 --file "$work/1k" >/dev/null; done
    nncp_nodes "$work/w2p/nncp"
    for i in $(seq "$n"); do nncp-file -quiet -cfg "$work/w2p/nncp/alice.hjson" "$work/1k" "bob:m$i"; done
    # One copy of the prepared spools per run, removed after the last run
    # (see W1), and the tool that goes first alternates: each tool's
    # acknowledgements delete 10,000 files, which slows whatever creates
    # files next.
    w2_rs() {
        A() { RS_SPOOL=$w/a "$bin/$@"; }
        B() { RS_SPOOL=$w/b "$bin/$@"; }
        measure "$work/w2.rs.export" A rs-queue export --to "$s1"
        measure "$work/w2.rs.import" B rs-relay import --from "$s1"
        t0=$(now_us)
        B rs-queue export --to "$s2" >/dev/null 2>&1
        A rs-ack apply --from "$s2" >/dev/null 2>&1
        t1=$(now_us)
        echo "$t0 $t1" | awk '{printf "%.6f\n", ($2-$1)/1e6}' >> "$work/w2.rs.acks"
        left=$(A rs-queue stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["outbound"]["total"]["messages"])')
        [ "$left" = 0 ] || { echo "W2: $left messages left at A" >&2; exit 1; }
    }
    # NNCP: keep packets until acknowledged, as rs does. NNCP acknowledges
    # what sits in the receiver's rx spool, so nncp-ack runs between
    # nncp-xfer -rx and nncp-toss; each command's time goes to its step.
    step_time() { local t0 t1; t0=$(now_us); "$@" >/dev/null 2>&1; t1=$(now_us); echo "$t0 $t1" | awk '{printf "%.6f\n", ($2-$1)/1e6}'; }
    w2_nncp() {
        local c=$w/nncp i1 i2 a1 a2 a3 a4 a5 got kept
        measure "$work/w2.nncp.export" nncp-xfer -quiet -cfg "$c/alice.hjson" -keep -tx -mkdir -node bob "$s1/nncp"
        i1=$(step_time nncp-xfer -quiet -cfg "$c/bob.hjson" -rx "$s1/nncp")
        a1=$(step_time bash -c "nncp-ack -quiet -cfg '$c/bob.hjson' -node alice 4>'$w/acks'")
        i2=$(step_time nncp-toss -quiet -cfg "$c/bob.hjson")
        echo "$i1 $i2" | awk '{printf "%.6f\n", $1+$2}' >> "$work/w2.nncp.import"
        got=$(ls "$c/bob/incoming" | wc -l)
        [ "$got" = "$n" ] || { echo "W2: NNCP delivered $got of $n" >&2; exit 1; }
        a2=$(step_time nncp-xfer -quiet -cfg "$c/bob.hjson" -tx -mkdir -node alice "$s2/nncp")
        a3=$(step_time bash -c "nncp-rm -quiet -cfg '$c/bob.hjson' -node alice -pkt < '$w/acks'")
        a4=$(step_time nncp-xfer -quiet -cfg "$c/alice.hjson" -rx "$s2/nncp")
        a5=$(step_time nncp-toss -quiet -cfg "$c/alice.hjson")
        echo "$a1 $a2 $a3 $a4 $a5" | awk '{printf "%.6f\n", $1+$2+$3+$4+$5}' >> "$work/w2.nncp.acks"
        kept=$(find "$c/alice/spool" -path '*/tx/*' -type f | wc -l)
        [ "$kept" = 0 ] || { echo "W2: NNCP's acknowledgements left $kept packets at alice" >&2; exit 1; }
    }
    for r in $(seq $runs); do
        echo "W2: run $r"
        w=$work/w2-$r
        cp -a "$work/w2p" "$w"
        sed -i "s|$work/w2p/|$w/|g" "$w"/nncp/*.hjson
        s1=$w/stick1; s2=$w/stick2; mkdir -p "$s1/nncp" "$s2/nncp"
        sync
        if [ $((r % 2)) = 1 ]; then w2_rs; w2_nncp; else w2_nncp; w2_rs; fi
    done
    rm -rf "$work"/w2-*
    for step in export import acks; do
        read -r rm rmin rmax rn < <(stats "$work/w2.rs.$step")
        read -r nm nmin nmax nn < <(stats "$work/w2.nncp.$step")
        row "W2 $step, messages/s ($n x 1 KiB)|$(awk -v n="$n" -v t="$rm" 'BEGIN{printf "%.0f", n/t}')|$(awk -v n="$n" -v t="$nm" 'BEGIN{printf "%.0f", n/t}')|$(awk -v a="$rm" -v b="$nm" 'BEGIN{printf "%.2fx", b/a}')|rs ${rmin}-${rmax} s, NNCP ${nmin}-${nmax} s|$rn"
    done
    paste "$work/w2.rs.export" "$work/w2.rs.import" "$work/w2.rs.acks" | awk '{print $1+$2+$3}' > "$work/w2.rs.total"
    paste "$work/w2.nncp.export" "$work/w2.nncp.import" "$work/w2.nncp.acks" | awk '{print $1+$2+$3}' > "$work/w2.nncp.total"
    read -r rm rmin rmax rn < <(stats "$work/w2.rs.total")
    read -r nm nmin nmax nn < <(stats "$work/w2.nncp.total")
    row "W2 end to end, messages/s|$(awk -v n="$n" -v t="$rm" 'BEGIN{printf "%.0f", n/t}')|$(awk -v n="$n" -v t="$nm" 'BEGIN{printf "%.0f", n/t}')|$(awk -v a="$rm" -v b="$nm" 'BEGIN{printf "%.2fx", b/a}')|rs ${rmin}-${rmax} s, NNCP ${nmin}-${nmax} s|$rn"
fi

# ------------------------------------------------------------------ W3
if wants w3; then
    echo "W3: 1 GiB"
    head -c 1073741824 /dev/urandom > "$work/1g"
    mb() { awk -v s="$1" 'BEGIN{printf "%.1f", 1024/s}'; }
    # rs sends 1 GiB as a bulk transfer: rs-send keeps it aside (sealed
    # for the receiver's age key when encrypted); the request goes over,
    # the answer comes back, the chunks go over, the receiver opens them
    # and delivers. Each step's time is the sum of the runs it takes:
    # export = the request's, the answer's and the chunks' exports;
    # import = their three imports. Peak RSS is the largest of them.
    w3_sum() { awk '{t+=$1; if ($2>m) m=$2} END {printf "%.2f %d\n", t, m}' "$1"; }
    # Each round runs rs in the clear, rs sealed and NNCP, one after the
    # other; a figure is the median of its rounds (peak RSS: the largest).
    w3_runs=${W3_RUNS:-3}
    for round in $(seq "$w3_runs"); do
    for mode in plain sealed; do
        d=$work/w3-$mode; mkdir -p "$d/s1" "$d/s2"
        RS_SPOOL=$d/a "$bin/rs-queue" init --site a --component a.host >/dev/null
        RS_SPOOL=$d/b "$bin/rs-queue" init --site b --component b.hub >/dev/null
        printf '\n[[peer]]\nid = "b.hub"\nupstream = true\n' >> "$d/a/config.toml"
        printf '\n[[peer]]\nid = "a.host"\n' >> "$d/b/config.toml"
        # The receiver asks for every chunk at once (media carried once),
        # in chunks of 4 MiB.
        sed -i 's/^window = .*/window = 100000/; s/^chunk_size = .*/chunk_size = "4MiB"/' "$d/b/config.toml"
        if [ $mode = sealed ]; then
            age-keygen -o "$d/b.key" 2>/dev/null
            sed -i "s|^\[bulk\]|[bulk]\nencrypt_to = [\"$(age-keygen -y "$d/b.key")\"]|" "$d/a/config.toml"
            sed -i "s|^\[bulk\]|[bulk]\nidentity = \"$d/b.key\"|" "$d/b/config.toml"
        fi
        sync
        rss "$work/w3.$mode.queue" env RS_SPOOL="$d/a" "$bin/rs-send" --class bench --subclass w3 --file "$work/1g"
        : > "$work/w3.$mode.ex"; : > "$work/w3.$mode.im"
        rss "$work/w3.$mode.ex" env RS_SPOOL="$d/a" "$bin/rs-queue" export --to "$d/s1"
        rss "$work/w3.$mode.im" env RS_SPOOL="$d/b" "$bin/rs-relay" import --from "$d/s1"
        rss "$work/w3.$mode.ex" env RS_SPOOL="$d/b" "$bin/rs-queue" export --to "$d/s2"
        rss "$work/w3.$mode.im" env RS_SPOOL="$d/a" "$bin/rs-relay" import --from "$d/s2"
        rss "$work/w3.$mode.ex" env RS_SPOOL="$d/a" "$bin/rs-queue" export --to "$d/s1"
        rss "$work/w3.$mode.im" env RS_SPOOL="$d/b" "$bin/rs-relay" import --from "$d/s1"
        w3_sum "$work/w3.$mode.ex" >> "$work/w3.$mode.export"; w3_sum "$work/w3.$mode.im" >> "$work/w3.$mode.import"
        rm -f "$work/w3.$mode.ex" "$work/w3.$mode.im"
        got=$(find "$d/b/received/new" -type f | head -1)
        [ -n "$got" ] || { echo "W3 $mode: nothing delivered" >&2; exit 1; }
        python3 - "$got" "$work/1g" <<'PY' || { echo "W3 $mode: the delivered data differs" >&2; exit 1; }
import sys, email, base64, hashlib, re
raw = open(sys.argv[1], 'rb').read()
m = re.search(rb'<data[^>]*>([^<]*)</data>', raw)
h = hashlib.sha256(base64.b64decode(m.group(1))).digest()
sys.exit(0 if h == hashlib.sha256(open(sys.argv[2], 'rb').read()).digest() else 1)
PY
        rm -rf "$d"
    done
    c=$work/w3-nncp; nncp_nodes "$c"; mkdir -p "$c/stick"
    rss "$work/w3.nncp.queue" nncp-file -quiet -cfg "$c/alice.hjson" "$work/1g" bob:big
    rss "$work/w3.nncp.export" nncp-xfer -quiet -cfg "$c/alice.hjson" -tx -mkdir -node bob "$c/stick"
    /usr/bin/time -f "%e %M" -o "$work/t1" nncp-xfer -quiet -cfg "$c/bob.hjson" -rx "$c/stick" >/dev/null 2>&1
    /usr/bin/time -f "%e %M" -o "$work/t2" nncp-toss -quiet -cfg "$c/bob.hjson" >/dev/null 2>&1
    paste "$work/t1" "$work/t2" | awk '{printf "%.2f %d\n", $1+$3, ($2>$4)?$2:$4}' >> "$work/w3.nncp.import"
    cmp -s "$work/1g" "$c/bob/incoming/big" || { echo "W3: NNCP's copy differs" >&2; exit 1; }
    rm -rf "$c"
    # This round's end to end: the sum of its steps (each file's last line).
    for who in plain sealed nncp; do
        cat "$work/w3.$who.queue" "$work/w3.$who.export" "$work/w3.$who.import" 2>/dev/null \
            | awk -v n="$round" 'NR==n || NR==2*n || NR==3*n {s+=$1} END {printf "%.2f\n", s}' >> "$work/w3.$who.e2e"
    done
    done
    # The disk in the same run: a durable sequential write of 1 GiB.
    t0=$(now_us); dd if="$work/1g" of="$work/dd.out" bs=4M conv=fsync status=none; t1=$(now_us)
    rm -f "$work/dd.out" "$work/1g"
    # The median of a file's first column, and the largest of its second.
    w3_med() { sort -n "$1" | awk '{t[NR]=$1; if ($2>m) m=$2} END {printf "%s %d\n", t[int((NR+1)/2)], m}'; }
    w3_span() { sort -n "$1" | awk 'NR==1{a=$1} {b=$1} END {printf "%s-%s", a, b}'; }
    for step in queue export import; do
        read -r ps pr < <(w3_med "$work/w3.plain.$step"); read -r es er < <(w3_med "$work/w3.sealed.$step"); read -r ns nr < <(w3_med "$work/w3.nncp.$step")
        row "W3 $step 1 GiB, MB/s (peak RSS MiB), rs bulk in the clear|$(mb "$ps") ($((pr/1024)))|n/a (NNCP always encrypts)| |$(w3_span "$work/w3.plain.$step") s|$w3_runs"
        row "W3 $step 1 GiB, MB/s (peak RSS MiB), encrypted (rs: bulk sealed with age)|$(mb "$es") ($((er/1024)))|$(mb "$ns") ($((nr/1024)))|$(awk -v a="$es" -v b="$ns" 'BEGIN{printf "%.2fx", b/a}')|rs $(w3_span "$work/w3.sealed.$step") s, NNCP $(w3_span "$work/w3.nncp.$step") s|$w3_runs"
    done
    read -r tp _ < <(w3_med "$work/w3.plain.e2e"); read -r te _ < <(w3_med "$work/w3.sealed.e2e"); read -r tn _ < <(w3_med "$work/w3.nncp.e2e")
    row "W3 end to end 1 GiB, MB/s, rs bulk in the clear|$(mb "$tp")|n/a| |$(w3_span "$work/w3.plain.e2e") s|$w3_runs"
    row "W3 end to end 1 GiB, MB/s, encrypted (rs: bulk sealed with age)|$(mb "$te")|$(mb "$tn")|$(awk -v a="$te" -v b="$tn" 'BEGIN{printf "%.2fx", b/a}')|rs $(w3_span "$work/w3.sealed.e2e") s, NNCP $(w3_span "$work/w3.nncp.e2e") s|$w3_runs"
    row "W3 the disk: durable write of the same 1 GiB (dd bs=4M conv=fsync), MB/s|$(echo "$t0 $t1" | awk '{printf "%.1f", 1024/(($2-$1)/1e6)}')|n/a| |physical limit|1"
fi

# ------------------------------------------------------------------ W4
if wants w4; then
    for n in 10000 100000 1000000; do
        echo "W4: $n queued"
        d=$work/w4; rm -rf "$d"
        RS_SPOOL=$d "$bin/rs-queue" init --site a >/dev/null && one_message $d
        sed -i "s/^\[queue\]$/[queue]\nmax_messages = $n/" "$d/config.toml"
        "$bin/examples/fill_queue" "$d" "$n" >/dev/null
        RS_SPOOL=$d "$bin/rs-queue" stats >/dev/null   # rebuilds the ledger once
        for i in 1 2 3; do
            measure "$work/w4.$n.list" bash -c "RS_SPOOL=$d $bin/rs-queue list | head -n 10"
            measure "$work/w4.$n.stats" env RS_SPOOL="$d" "$bin/rs-queue" stats
            measure "$work/w4.$n.evict" env RS_SPOOL="$d" "$bin/rs-send" --class bench --subclass w4 --precedence bulk --file "$work/1k"
        done
        for op in list stats evict; do
            read -r m mn mx c < <(stats "$work/w4.$n.$op")
            row "W4 $op at $n queued, s|$m|n/a (no equivalent)| |$mn-$mx|$c"
        done
        rm -rf "$d"
    done
fi

# ------------------------------------------------------------------ W5
if wants w5; then
    n=${RS_BENCH_MESSAGES:-10000}; runs=3
    echo "W5: preparing $n messages each way for each tool"
    p=$work/w5p; mkdir -p "$p/pki"
    make_pki "$p/pki"
    rs_sites "$p" \
        "$(printf 'routes = ["https://127.0.0.1:59999/rs?ca=%s&cert=%s&key=%s"]' "$p/pki/ca.pem" "$p/pki/a.host.pem" "$p/pki/a.host.key")" ""
    sed -i "s|^\[http\]\$|[http]\ncert = \"$p/pki/server.pem\"\nkey = \"$p/pki/server.key\"\nclient_ca = \"$p/pki/ca.pem\"|" "$p/b/config.toml"
    for i in $(seq "$n"); do RS_SPOOL=$p/a "$bin/rs-send" --class bench --subclass w5 --file "$work/1k" >/dev/null; done
    for i in $(seq "$n"); do RS_SPOOL=$p/b "$bin/rs-send" --class bench --subclass w5 --to a.host --file "$work/1k" >/dev/null; done
    nncp_nodes "$p/nncp"
    for i in $(seq "$n"); do nncp-file -quiet -cfg "$p/nncp/alice.hjson" "$work/1k" "bob:up$i"; done
    for i in $(seq "$n"); do nncp-file -quiet -cfg "$p/nncp/bob.hjson" "$work/1k" "alice:down$i"; done
    count() { ls "$1" 2>/dev/null | wc -l; }
    # Flushes at the site until both hold everything and nothing is
    # left unacknowledged on either side.
    w5_rs_exchange() {
        local k
        for k in $(seq 10); do
            RS_SPOOL=$w/a "$bin/rs-queue" flush --force >/dev/null 2>&1 || true
            if [ "$(count "$w/b/received/new")" = "$n" ] && [ "$(count "$w/a/received/new")" = "$n" ] \
                && [ -z "$(find "$w/a/sent" "$w/a/queue" "$w/b/sent" "$w/b/queue" -type f -print -quit)" ]; then
                return 0
            fi
        done
        echo "W5: rs did not settle in 10 flushes (see $w)" >&2; trap - EXIT; exit 1
    }
    w5_rs_serve() {
        local port; port=$(free_port)
        sed -i "s/127.0.0.1:59999/127.0.0.1:$port/" "$w/a/config.toml"
        RS_SPOOL=$w/b "$bin/rs-relay" serve --listen "127.0.0.1:$port" 2>"$w/serve.log" &
        local pid=$!
        until grep -q listening "$w/serve.log"; do sleep 0.05; done
        measure "$work/w5.serve" w5_rs_exchange
        kill $pid; wait $pid 2>/dev/null || true
    }
    w5_rs_nginx() {
        local port; port=$(free_port)
        sed -i "s/127.0.0.1:59999/127.0.0.1:$port/" "$w/a/config.toml"
        local g=$w/nginx; mkdir -p "$g/tmp"
        printf '#!/bin/sh\nexport RS_SPOOL=%s\nexec %s cgi\n' "$w/b" "$bin/rs-relay" > "$g/rs-cgi"; chmod 755 "$g/rs-cgi"
        cat > "$g/nginx.conf" <<NGINX
daemon off; user root; worker_processes 2; pid $g/nginx.pid; error_log $g/error.log;
events { worker_connections 256; }
http {
    client_body_temp_path $g/tmp/body; fastcgi_temp_path $g/tmp/fastcgi; proxy_temp_path $g/tmp/proxy;
    uwsgi_temp_path $g/tmp/uwsgi; scgi_temp_path $g/tmp/scgi; access_log off;
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $p/pki/server.pem; ssl_certificate_key $p/pki/server.key;
        ssl_client_certificate $p/pki/ca.pem; ssl_verify_client optional_no_ca;
        client_max_body_size 64m;
        location /rs {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $g/rs-cgi;
            fastcgi_param SSL_CLIENT_VERIFY \$ssl_client_verify;
            fastcgi_param SSL_CLIENT_CERT \$ssl_client_escaped_cert;
            fastcgi_read_timeout 300s;
            fastcgi_pass unix:$g/fcgi.sock;
        }
    }
}
NGINX
        setsid fcgiwrap -c 4 -s "unix:$g/fcgi.sock" 2>"$g/fcgiwrap.log" & local fpid=$!
        nginx -p "$g" -c "$g/nginx.conf" 2>"$g/nginx.log" & local npid=$!
        until [ -S "$g/fcgi.sock" ] && (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.05; done
        measure "$work/w5.nginx" w5_rs_exchange
        kill -TERM $npid; wait $npid 2>/dev/null || true
        kill -- -$fpid; wait $fpid 2>/dev/null || true   # its children too
    }
    w5_nncp() {
        local c=$w/nncp port; port=$(free_port)
        sed -i "s|^    bob: {|    bob: {\n      addrs: {main: \"127.0.0.1:$port\"}|" "$c/alice.hjson"
        nncp-daemon -quiet -autotoss -cfg "$c/bob.hjson" -bind "127.0.0.1:$port" & local dpid=$!
        until (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.05; done
        # nncp-call exits 1 here even when everything went (checked below).
        call() { nncp-call -quiet -autotoss -onlinedeadline 1 -cfg "$c/alice.hjson" bob || true; }
        measure "$work/w5.nncp" call
        kill $dpid; wait $dpid 2>/dev/null || true
        local up down; up=$(count "$c/bob/incoming"); down=$(count "$c/alice/incoming")
        [ "$up" = "$n" ] && [ "$down" = "$n" ] || { echo "W5: NNCP delivered $up up and $down down of $n" >&2; exit 1; }
    }
    for r in $(seq $runs); do
        echo "W5: run $r"
        for tool in serve nginx nncp; do
            w=$work/w5-$r-$tool
            cp -a "$p" "$w"
            sed -i "s|$p/|$w/|g" "$w"/nncp/*.hjson
            sync
            case $tool in serve) w5_rs_serve;; nginx) w5_rs_nginx;; nncp) w5_nncp;; esac
            rm -rf "$w"
        done
    done
    read -r nm nmin nmax nn < <(stats "$work/w5.nncp")
    for tool in serve nginx; do
        read -r rm rmin rmax rn < <(stats "$work/w5.$tool")
        label=$([ $tool = serve ] && echo "rs-relay serve" || echo "nginx + rs-relay cgi")
        row "W5 session, $n + $n x 1 KiB both ways, messages/s, $label|$(awk -v n="$n" -v t="$rm" 'BEGIN{printf "%.0f", 2*n/t}')|$(awk -v n="$n" -v t="$nm" 'BEGIN{printf "%.0f", 2*n/t}')|$(awk -v a="$rm" -v b="$nm" 'BEGIN{printf "%.2fx", b/a}')|rs ${rmin}-${rmax} s, NNCP ${nmin}-${nmax} s|$rn"
    done
fi

# ------------------------------------------------------------------ W6
if wants w6; then
    n=${RS_BENCH_MESSAGES:-10000}; runs=3
    echo "W6: preparing $n messages on a stick for r.relay"
    p=$work/w6p; mkdir -p "$p"
    RS_SPOOL=$p/a "$bin/rs-queue" init --site a --component a.host >/dev/null && one_message $p/a
    printf '\n[[peer]]\nid = "r.relay"\nupstream = true\n' >> "$p/a/config.toml"
    for i in $(seq "$n"); do RS_SPOOL=$p/a "$bin/rs-send" --class inventory --subclass w6 --file "$work/1k" >/dev/null; done
    mkdir -p "$p/stick"
    RS_SPOOL=$p/a "$bin/rs-queue" export --to "$p/stick" >/dev/null
    # Three receivers of the same stick: a relay with 20 rules, a relay
    # without, and a final destination (r.relay too, with no upstream).
    for kind in rules bare final; do
        RS_SPOOL=$p/$kind "$bin/rs-queue" init --site r --component r.relay >/dev/null && one_message $p/$kind
        printf '\n[[peer]]\nid = "a.host"\n' >> "$p/$kind/config.toml"
        [ $kind = final ] || printf '\n[[peer]]\nid = "p.hub"\nupstream = true\n' >> "$p/$kind/config.toml"
    done
    printf '\n[[peer]]\nid = "c.hub"\n' >> "$p/rules/config.toml"
    {
        # 19 rules no message meets, each on a different field, then the
        # one that forwards: every message is tried against all 20.
        for i in $(seq 1 5); do printf '[[rule]]\nname = "debug-%s"\nclass = ["debug-%s*", "trace-%s"]\naction = "discard"\n\n' "$i" "$i" "$i"; done
        for i in $(seq 1 4); do printf '[[rule]]\nname = "raw-%s"\nsubclass = "raw-%s*"\naction = "forward"\npeer = "c.hub"\n\n' "$i" "$i"; done
        for i in $(seq 1 4); do printf '[[rule]]\nname = "site-%s"\nsource = "x%s.*"\naction = "discard"\n\n' "$i" "$i"; done
        for i in $(seq 1 3); do printf '[[rule]]\nname = "alarm-%s"\nkind = "alarm"\nseverity = "critical"\nclass = "c%s"\naction = "forward"\npeer = "c.hub"\n\n' "$i" "$i"; done
        for i in $(seq 1 3); do printf '[[rule]]\nname = "night-%s"\nclass = "backup-%s"\nwindow = "02:00-03:00"\naction = "discard"\n\n' "$i" "$i"; done
        printf '[[rule]]\nname = "upstream"\nclass = "inventory"\naction = "forward"\npeer = "p.hub"\n'
    } >> "$p/rules/config.toml"
    rules=$(RS_SPOOL=$p/rules "$bin/rs-relay" rules --json | wc -l)
    [ "$rules" = 20 ] || { echo "W6: the relay has $rules rules, not 20" >&2; exit 1; }
    w6_one() { # KIND
        local w=$work/w6-$r-$1 t0 t1 left
        cp -a "$p" "$w"
        sync
        measure "$work/w6.$1.import" env RS_SPOOL="$w/$1" "$bin/rs-relay" import --from "$w/stick"
        if [ "$1" != final ]; then
            mkdir -p "$w/up"
            measure "$work/w6.$1.export" env RS_SPOOL="$w/$1" "$bin/rs-queue" export --to "$w/up"
            left=$(find "$w/up/p.hub" -name '*.msg' | wc -l)
        else
            left=$(find "$w/final/received" -type f | wc -l)
        fi
        [ "$left" = "$n" ] || { echo "W6: $1 passed on $left of $n" >&2; exit 1; }
        rm -rf "$w"
    }
    for r in $(seq $runs); do
        echo "W6: run $r"
        if [ $((r % 2)) = 1 ]; then w6_one rules; w6_one bare; w6_one final
        else w6_one final; w6_one bare; w6_one rules; fi
    done
    rm -rf "$p"
    read -r fm fmin fmax fn < <(stats "$work/w6.final.import")
    for kind in rules bare; do
        read -r im imin imax in < <(stats "$work/w6.$kind.import")
        read -r em emin emax en < <(stats "$work/w6.$kind.export")
        label=$([ $kind = rules ] && echo "with 20 rules" || echo "without rules")
        row "W6 relay import $label, messages/s (peer: plain import at the destination)|$(awk -v n="$n" -v t="$im" 'BEGIN{printf "%.0f", n/t}')|$(awk -v n="$n" -v t="$fm" 'BEGIN{printf "%.0f", n/t}')|$(awk -v a="$im" -v b="$fm" 'BEGIN{printf "%.2fx", b/a}')|relay ${imin}-${imax} s, plain ${fmin}-${fmax} s|$in"
        row "W6 relay export onward $label, messages/s|$(awk -v n="$n" -v t="$em" 'BEGIN{printf "%.0f", n/t}')| | |${emin}-${emax} s|$en"
    done
fi

# ------------------------------------------------------------------ W7
if wants w7; then
    n=${RS_BENCH_MESSAGES:-10000}; runs=3; entries=10000
    echo "W7: preparing $n messages and a $entries-entry map"
    p=$work/w7p; mkdir -p "$p/pki"
    make_pki "$p/pki"
    tls="ca=$p/pki/ca.pem&cert=$p/pki/a.host.pem&key=$p/pki/a.host.key"
    rs_sites "$p" 'routes = ["dir:/w7-route"]' ""
    sed -i "s|^\[http\]\$|[http]\ncert = \"$p/pki/server.pem\"\nkey = \"$p/pki/server.key\"\nclient_ca = \"$p/pki/ca.pem\"|" "$p/b/config.toml"
    for i in $(seq "$n"); do RS_SPOOL=$p/a "$bin/rs-send" --class bench --subclass w7 --file "$work/1k" >/dev/null; done
    # The map: inventory (primary DEAD, backup LIVE) among other services.
    w7_map() { # FILE DEAD_PORT LIVE_PORT
        {
            echo '<?xml version="1.0" encoding="UTF-8"?>'
            echo '<service-map format="1" type="3" revision="1" sphere="provider.example">'
            awk -v n="$entries" 'BEGIN { for (i = 1; i < n; i++) printf " <entry service=\"svc%d\" version=\"1.%d\" epoch=\"%d\"><location host=\"h%d.provider.example\" port=\"8443\"/><location url=\"https://b%d.provider.example/rs\"/></entry>\n", i, i % 7, i % 5 + 1, i, i }'
            printf ' <entry service="inventory" version="1.0" epoch="3"><location url="https://127.0.0.1:%s/rs"/><location url="https://127.0.0.1:%s/rs"/></entry>\n' "$2" "$3"
            echo '</service-map>'
        } > "$1"
    }
    w7_map "$p/map.xml" 1 2
    for k in $(seq 20); do measure "$work/w7.resolve" "$bin/rs-spm" resolve inventory --map "$p/map.xml" --client a.host; done
    for k in $(seq 10); do measure "$work/w7.fetch" env RS_SPOOL="$p/a" "$bin/rs-spm" fetch --from "file://$p/map.xml" --accept-older; done
    rm -rf "$p/a/spm"
    count() { ls "$1" 2>/dev/null | wc -l; }
    w7_one() { # direct|spm
        local how=$1 w=$work/w7-$r-$1 port dead k
        cp -a "$p" "$w"
        port=$(free_port); dead=$(free_port)
        if [ "$1" = spm ]; then
            w7_map "$w/map.xml" "$dead" "$port"
            RS_SPOOL=$w/a "$bin/rs-spm" fetch --from "file://$w/map.xml" >/dev/null 2>&1
            sed -i "s|dir:/w7-route|spm:inventory?${tls//&/\\&}|" "$w/a/config.toml"
        else
            sed -i "s|dir:/w7-route|https://127.0.0.1:$port/rs?${tls//&/\\&}|" "$w/a/config.toml"
        fi
        RS_SPOOL=$w/b "$bin/rs-relay" serve --listen "127.0.0.1:$port" 2>"$w/serve.log" &
        local pid=$!
        until grep -q listening "$w/serve.log"; do sleep 0.05; done
        sync
        flushes() {
            for k in $(seq 10); do
                RS_SPOOL=$w/a "$bin/rs-queue" flush --force >/dev/null 2>&1 || true
                [ "$(count "$w/b/received/new")" = "$n" ] && [ -z "$(find "$w/a/sent" "$w/a/queue" -type f -print -quit)" ] && return 0
            done
            kill $pid
            echo "W7: $how did not settle in 10 flushes (see $w)" >&2; trap - EXIT; exit 1
        }
        measure "$work/w7.$1" flushes
        kill $pid; wait $pid 2>/dev/null || true
        [ "$(count "$w/b/received/new")" = "$n" ] || { echo "W7: $1 delivered $(count "$w/b/received/new") of $n (see $w)" >&2; trap - EXIT; exit 1; }
        rm -rf "$w"
    }
    for r in $(seq $runs); do
        echo "W7: run $r"
        if [ $((r % 2)) = 1 ]; then w7_one spm; w7_one direct; else w7_one direct; w7_one spm; fi
    done
    rm -rf "$p"
    read -r sm smin smax sn < <(stats "$work/w7.spm")
    read -r dm dmin dmax dn < <(stats "$work/w7.direct")
    row "W7 spm:SERVICE route, primary down, $entries-entry map, messages/s (peer: fixed https:// route)|$(awk -v n="$n" -v t="$sm" 'BEGIN{printf "%.0f", n/t}')|$(awk -v n="$n" -v t="$dm" 'BEGIN{printf "%.0f", n/t}')|$(awk -v a="$sm" -v b="$dm" 'BEGIN{printf "%.2fx", b/a}')|spm ${smin}-${smax} s, fixed ${dmin}-${dmax} s|$sn"
    read -r m mn mx c < <(stats "$work/w7.resolve")
    row "W7 rs-spm resolve on a $entries-entry map, ms|$(awk -v t="$m" 'BEGIN{printf "%.1f", t*1e3}')| | |$(awk -v a="$mn" -v b="$mx" 'BEGIN{printf "%.1f-%.1f ms", a*1e3, b*1e3}')|$c"
    read -r m mn mx c < <(stats "$work/w7.fetch")
    row "W7 rs-spm fetch (file://) of that map, checked and kept, ms|$(awk -v t="$m" 'BEGIN{printf "%.1f", t*1e3}')| | |$(awk -v a="$mn" -v b="$mx" 'BEGIN{printf "%.1f-%.1f ms", a*1e3, b*1e3}')|$c"
fi

# ------------------------------------------------------------------ scale
if wants scale; then
    sites=6; per=$(( ${RS_BENCH_MESSAGES:-10000} / 6 )); n=$((per * sites)); runs=3
    echo "scale: preparing $sites sites with $per messages each"
    p=$work/scp; mkdir -p "$p"
    for k in $(seq $sites); do
        RS_SPOOL=$p/s$k "$bin/rs-queue" init --site s$k --component s$k.host >/dev/null && one_message "$p/s$k"
        printf '\n[[peer]]\nid = "p.hub"\nupstream = true\nauthentication = "none"\nroutes = ["http://127.0.0.1:1/rs"]\n' >> "$p/s$k/config.toml"
        for i in $(seq "$per"); do RS_SPOOL=$p/s$k "$bin/rs-send" --class bench --subclass scale --file "$work/1k" >/dev/null; done
    done
    for i in 1 2 3; do
        RS_SPOOL=$p/p$i "$bin/rs-queue" init --site p --component p.hub >/dev/null && one_message "$p/p$i"
        for k in $(seq $sites); do printf '\n[[peer]]\nid = "s%s.host"\nauthentication = "none"\n' "$k" >> "$p/p$i/config.toml"; done
    done
    # PostgreSQL (fsync and synchronous_commit on, as shipped) and
    # nats-server with JetStream, on 127.0.0.1; a fresh database and
    # stream for each run.
    # Its own directory: the postgres user cannot enter $work.
    pg=$(mktemp -d /var/tmp/rs-bench-pg.XXXXXX)
    as_pg=(); [ "$(id -u)" -eq 0 ] && { chown postgres: "$pg"; as_pg=(runuser -u postgres --); }
    pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    "${as_pg[@]}" "$pgbin/initdb" -D "$pg/data" -A trust -U rs >/dev/null
    pgport=$(free_port)
    "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pg/data" -l "$pg/log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $pgport -c unix_socket_directories=$pg -c max_connections=200" start >/dev/null
    stop_pg() { "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pg/data" -m fast -w stop >/dev/null 2>&1 || true; }
    trap 'stop_pg; rm -rf "$work" "$pg"' EXIT
    psql_rs() { psql -h 127.0.0.1 -p "$pgport" -U rs -At -v ON_ERROR_STOP=1 "$@"; }
    # busy_ticks: the machine's CPU time so far (user, nice, system, irq,
    # softirq), in clock ticks; cpu_ticks PID...: those processes' own.
    busy_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8}' /proc/stat; }
    cpu_ticks() { local t=0 pid; for pid in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$pid/stat"))); done; echo $t; }
    hz=$(getconf CLK_TCK)
    scale_one() { # KIND (file, or pgN: N instances on the shared backend)
        local kind=$1 w=$work/scale-$r-$1 k i pids=() ports=() t0 t1 b0 b1 c1 got left
        cp -a "$p" "$w"
        local inst=1; [ "$kind" = file ] || inst=${kind#pg}
        if [ "$kind" != file ]; then
            psql_rs -d postgres -c "DROP DATABASE IF EXISTS rs" -c "CREATE DATABASE rs" >/dev/null
            local nport; nport=$(free_port)
            /usr/sbin/nats-server -a 127.0.0.1 -p "$nport" -js -sd "$w/js" -l "$w/nats.log" & local natspid=$!
            until grep -q "Server is ready" "$w/nats.log" 2>/dev/null; do sleep 0.05; done
            for i in $(seq "$inst"); do
                sed -i "s|^backend = \"spool\".*|backend = \"postgres\"\npostgres = \"host=127.0.0.1 port=$pgport user=rs dbname=rs\"\nnats = \"nats://127.0.0.1:$nport\"|" "$w/p$i/config.toml"
            done
            RS_SPOOL=$w/p1 "$bin/rs-relay" db init >/dev/null
        fi
        for i in $(seq "$inst"); do
            ports+=("$(free_port)")
            RS_SPOOL=$w/p$i "$bin/rs-relay" serve --listen "127.0.0.1:${ports[-1]}" 2>"$w/serve$i.log" &
            pids+=($!)
            until grep -q listening "$w/serve$i.log"; do sleep 0.05; done
        done
        # Site k polls instance k mod N (as a balancer would spread them).
        for k in $(seq $sites); do sed -i "s|127.0.0.1:1/rs|127.0.0.1:${ports[$((k % inst))]}/rs|" "$w/s$k/config.toml"; done
        sync
        b0=$(busy_ticks); t0=$(now_us)
        local fl=()
        for k in $(seq $sites); do
            ( for j in $(seq 5); do
                RS_SPOOL=$w/s$k "$bin/rs-queue" flush --force >/dev/null 2>&1 || true
                [ -z "$(find "$w/s$k/queue" -type f -print -quit)" ] && break
              done ) &
            fl+=($!)
        done
        wait "${fl[@]}"
        t1=$(now_us); b1=$(busy_ticks); c1=$(cpu_ticks "${pids[@]}")
        # The database's and JetStream's share: their processes' CPU since
        # they started (the database's backends started with this run's
        # relays; the postmaster's own since its start is small).
        if [ "$kind" != file ]; then
            local d1; d1=$(cpu_ticks $(pgrep -u postgres) 2>/dev/null || echo 0)
            awk -v c="$d1" -v hz="$hz" -v n="$n" 'BEGIN{printf "%.1f\n", c/hz/n*1e6}' >> "$work/scale.$kind.dbcpu"
            awk -v c="$(cpu_ticks "$natspid")" -v hz="$hz" -v n="$n" 'BEGIN{printf "%.1f\n", c/hz/n*1e6}' >> "$work/scale.$kind.natscpu"
        fi
        for pid in "${pids[@]}"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done
        if [ "$kind" = file ]; then
            got=$(find "$w/p1/received/new" -type f | wc -l)
        else
            got=$(psql_rs -d rs -c "SELECT count(*) FROM rs_accepted WHERE kind = 0")
            kill "$natspid"; wait "$natspid" 2>/dev/null || true
        fi
        left=$(find "$w"/s*/queue -type f | wc -l)
        [ "$got" = "$n" ] && [ "$left" = 0 ] || { echo "scale: $kind accepted $got of $n, $left left at the sites (see $w)" >&2; trap - EXIT; stop_pg; exit 1; }
        echo "$t0 $t1" | awk '{printf "%.6f\n", ($2-$1)/1e6}' >> "$work/scale.$kind"
        awk -v c="$c1" -v hz="$hz" -v n="$n" 'BEGIN{printf "%.1f\n", c/hz/n*1e6}' >> "$work/scale.$kind.relaycpu"
        awk -v c="$((b1 - b0))" -v hz="$hz" -v n="$n" 'BEGIN{printf "%.1f\n", c/hz/n*1e6}' >> "$work/scale.$kind.allcpu"
        rm -rf "$w"
    }
    for r in $(seq $runs); do
        echo "scale: run $r"
        if [ $((r % 2)) = 1 ]; then order=(file pg1 pg2 pg3); else order=(pg3 pg2 pg1 file); fi
        for kind in "${order[@]}"; do scale_one "$kind"; done
    done
    stop_pg; rm -rf "$pg"; trap 'rm -rf "$work"' EXIT
    read -r fm fmin fmax fn < <(stats "$work/scale.file")
    read -r fc _ < <(stats "$work/scale.file.relaycpu")
    read -r fa _ < <(stats "$work/scale.file.allcpu")
    for kind in pg1 pg2 pg3; do
        read -r m mmin mmax mn < <(stats "$work/scale.$kind")
        read -r rc _ < <(stats "$work/scale.$kind.relaycpu")
        read -r ac _ < <(stats "$work/scale.$kind.allcpu")
        read -r dc _ < <(stats "$work/scale.$kind.dbcpu")
        read -r nc _ < <(stats "$work/scale.$kind.natscpu")
        row "Scale-out: $n x 1 KiB from $sites sites over HTTP, ${kind#pg} relay(s) on PostgreSQL + JetStream, messages/s (peer: one relay on its file spool); CPU µs/message relays, PostgreSQL, nats-server, whole machine|$(awk -v n="$n" -v t="$m" 'BEGIN{printf "%.0f", n/t}') ($rc, $dc, $nc, $ac)|$(awk -v n="$n" -v t="$fm" 'BEGIN{printf "%.0f", n/t}') ($fc, $fa)|$(awk -v a="$m" -v b="$fm" 'BEGIN{printf "%.2fx", b/a}')|shared ${mmin}-${mmax} s, file ${fmin}-${fmax} s|$mn"
    done
fi

# ------------------------------------------------------------------ bulk
if wants bulk; then
    echo "bulk: 1 GiB as a bulk transfer over HTTP (tus) to rs-relay serve"
    head -c 1073741824 /dev/urandom > "$work/1g"
    d=$work/bulk; mkdir -p "$d"
    port=$(free_port)
    RS_SPOOL=$d/a "$bin/rs-queue" init --site a --component a.host >/dev/null
    RS_SPOOL=$d/b "$bin/rs-queue" init --site b --component b.hub >/dev/null
    printf '\n[[peer]]\nid = "b.hub"\nupstream = true\nauthentication = "none"\nroutes = ["http://127.0.0.1:%s/rs"]\n' "$port" >> "$d/a/config.toml"
    printf '\n[[peer]]\nid = "a.host"\nauthentication = "none"\n' >> "$d/b/config.toml"
    /usr/bin/time -f "%e %M" -o "$work/bulk.serve" env RS_SPOOL="$d/b" "$bin/rs-relay" serve --listen "127.0.0.1:$port" 2>"$d/serve.log" &
    spid=$!
    until grep -q listening "$d/serve.log"; do sleep 0.05; done
    rss "$work/bulk.send" env RS_SPOOL="$d/a" "$bin/rs-send" --class bench --subclass bulk --file "$work/1g"
    rss "$work/bulk.flush" env RS_SPOOL="$d/a" "$bin/rs-queue" flush
    pkill -TERM -P "$spid" || true; wait "$spid" 2>/dev/null || true
    got=$(ls "$d/b/received/new" | head -1)
    [ -n "$got" ] || { echo "bulk: nothing delivered" >&2; exit 1; }
    RS_SPOOL=$d/a "$bin/rs-queue" list --area bulk --json | grep -q '"delivered"' || { echo "bulk: not verified" >&2; exit 1; }
    # The physical limit in the same minute: a durable copy of the file.
    t0=$(now_us); dd if="$work/1g" of="$d/copy" bs=1M conv=fsync status=none; t1=$(now_us)
    dds=$(echo "$t0 $t1" | awk '{printf "%.2f", ($2-$1)/1e6}')
    rm -rf "$d" "$work/1g"
    mbs() { awk -v s="$1" 'BEGIN{printf "%.1f", 1024/s}'; }
    read -r ss sr < "$work/bulk.send"; read -r fs fr < "$work/bulk.flush"; read -r _ vr < <(tail -1 "$work/bulk.serve")
    row "bulk 1 GiB over HTTP: rs-send keeps it aside, MB/s (peak RSS MiB); peer: dd conv=fsync copy|$(mbs "$ss") ($((sr/1024)))|$(mbs "$dds")|$(awk -v a="$ss" -v b="$dds" 'BEGIN{printf "%.2fx", b/a}')|rs ${ss} s, dd ${dds} s|1"
    row "bulk 1 GiB over HTTP: rs-queue flush (request, tus upload, verified, delivered), MB/s (peak RSS MiB); peer: dd conv=fsync copy|$(mbs "$fs") ($((fr/1024)))|$(mbs "$dds")|$(awk -v a="$fs" -v b="$dds" 'BEGIN{printf "%.2fx", b/a}')|rs ${fs} s, dd ${dds} s|1"
    row "bulk 1 GiB over HTTP: rs-relay serve receiving it, peak RSS MiB|$((vr/1024))|n/a| | |1"
fi

# ------------------------------------------------------------------ protect
if wants protect; then
    d=$work/protect; mkdir -p "$d"
    export GNUPGHOME=$d/gnupg; mkdir -p "$GNUPGHOME"; chmod 700 "$GNUPGHOME"
    for who in a b; do
        gpg --batch --passphrase '' --quick-gen-key "$who <$who@bench>" future-default default 1y 2>/dev/null
        gpg --batch --armor --export-secret-keys "$who@bench" > "$d/$who.key"
        gpg --batch --armor --export "$who@bench" > "$d/$who.pub"
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$who" -addext "extendedKeyUsage=emailProtection" \
            -keyout "$d/$who.pem.key" -out "$d/$who.pem" 2>/dev/null
    done
    rs_sites "$d" \
        "$(printf 'protection = "openpgp"\nour_key = "%s"\npeer_cert = "%s"' "$d/a.key" "$d/b.pub")" \
        "$(printf 'protection = "openpgp"\nour_key = "%s"\npeer_cert = "%s"' "$d/b.key" "$d/a.pub")"
    mkdir -p "$d/s"
    RS_SPOOL=$d/s "$bin/rs-queue" init --site s --component s.host >/dev/null && one_message $d/s
    printf '\n[[peer]]\nid = "b.hub"\nprotection = "smime"\nour_key = "%s"\nour_cert = "%s"\npeer_cert = "%s"\n' "$d/a.pem.key" "$d/a.pem" "$d/b.pem" >> "$d/s/config.toml"
    printf '\n[[peer]]\nid = "a.host"\nprotection = "smime"\nour_key = "%s"\nour_cert = "%s"\npeer_cert = "%s"\n' "$d/b.pem.key" "$d/b.pem" "$d/a.pem" >> "$d/s/config.toml"
    for size in 1073741824 268435456; do
        head -c $size /dev/urandom > "$d/data"
        RS_SPOOL=$d/a "$bin/rs-send" --class bench --subclass protect --file "$d/data" >/dev/null
        mv "$d"/a/queue/normal/* "$d/envelope.$size"
    done
    rm -f "$d/data"
    env1g=$d/envelope.1073741824; env256=$d/envelope.268435456
    mbs() { awk -v b="$1" -v s="$2" 'BEGIN{printf "%.1f", b/1048576/s}'; }
    sz=$(stat -c %s "$env1g")
    rss "$work/p.rs.protect" "$bin/examples/protect" protect "$d/a" b.hub "$env1g" "$d/out.pgp"
    rss "$work/p.rs.unprotect" "$bin/examples/protect" unprotect "$d/b" a.host "$d/out.pgp" "$d/back"
    cmp -s "$env1g" "$d/back" || { echo "protect: OpenPGP round trip differs" >&2; exit 1; }
    rm -f "$d/out.pgp" "$d/back"
    rss "$work/p.gpg.protect" gpg --batch --yes --armor --compress-algo none --sign --encrypt -u a@bench -r b@bench -o "$d/out.asc" "$env1g"
    rss "$work/p.gpg.unprotect" gpg --batch --yes --decrypt -o "$d/back" "$d/out.asc"
    rm -f "$d/out.asc" "$d/back"
    for step in protect unprotect; do
        read -r rs rr < "$work/p.rs.$step"; read -r gs gr < "$work/p.gpg.$step"
        row "OpenPGP $step, 1 GiB of data ($((sz/1048576)) MiB envelope), MB/s (peak RSS MiB); peer: gpg|$(mbs "$sz" "$rs") ($((rr/1024)))|$(mbs "$sz" "$gs") ($((gr/1024)))|$(awk -v a="$rs" -v b="$gs" 'BEGIN{printf "%.2fx", b/a}')|rs $rs s, gpg $gs s|1"
    done
    sz=$(stat -c %s "$env256")
    rss "$work/s.rs.protect" "$bin/examples/protect" protect "$d/s" b.hub "$env256" "$d/out.p7m"
    rss "$work/s.rs.unprotect" "$bin/examples/protect" unprotect "$d/s" a.host "$d/out.p7m" "$d/back"
    rm -f "$d/out.p7m" "$d/back"
    /usr/bin/time -f "%e %M" -o "$work/t1" openssl cms -sign -binary -signer "$d/a.pem" -inkey "$d/a.pem.key" -in "$env256" -out "$d/signed" >/dev/null 2>&1
    /usr/bin/time -f "%e %M" -o "$work/t2" openssl cms -encrypt -binary -aes256 -in "$d/signed" -out "$d/enc" "$d/b.pem" >/dev/null 2>&1
    paste "$work/t1" "$work/t2" | awk '{printf "%.2f %d\n", $1+$3, ($2>$4)?$2:$4}' > "$work/s.ossl.protect"
    /usr/bin/time -f "%e %M" -o "$work/t1" openssl cms -decrypt -binary -recip "$d/b.pem" -inkey "$d/b.pem.key" -in "$d/enc" -out "$d/dec" >/dev/null 2>&1
    /usr/bin/time -f "%e %M" -o "$work/t2" openssl cms -verify -binary -CAfile "$d/a.pem" -in "$d/dec" -out "$d/back" >/dev/null 2>&1
    paste "$work/t1" "$work/t2" | awk '{printf "%.2f %d\n", $1+$3, ($2>$4)?$2:$4}' > "$work/s.ossl.unprotect"
    for step in protect unprotect; do
        read -r rs rr < "$work/s.rs.$step"; read -r os or < "$work/s.ossl.$step"
        row "S/MIME $step, 256 MiB of data ($((sz/1048576)) MiB envelope), MB/s (peak RSS MiB); peer: openssl cms|$(mbs "$sz" "$rs") ($((rr/1024)))|$(mbs "$sz" "$os") ($((or/1024)))|$(awk -v a="$rs" -v b="$os" 'BEGIN{printf "%.2fx", b/a}')|rs $rs s, openssl $os s|1"
    done
    rm -rf "$d"
fi

# ------------------------------------------------------------------ limits
# What bounds the figures above, measured here in the same run.
if wants limits; then
    echo "limits: process start, durable writes, disk, crypto"
    d=$work/limits; mkdir -p "$d/tmp" "$d/queue"
    lrow() { printf '%s\n' "$*" >> "$work/limits.table"; }
    n=2000; t0=$(now_us); for i in $(seq $n); do /bin/true; done; t1=$(now_us)
    lrow "process start: /bin/true from a shell loop, ms each|$(echo "$t0 $t1 $n" | awk '{printf "%.3f", ($2-$1)/1e3/$3}')|W1"
    # What rs-send must do at least: write a 2.5 KB file, fsync it, rename
    # it into the queue, fsync the directory. Median of 500.
    lrow "durable 2.5 KB file (write, fsync, rename, fsync dir), ms each|$(python3 - "$d" <<'PY'
import os, sys, time, statistics
d = sys.argv[1]; data = os.urandom(2546); dirfd = os.open(d + "/queue", os.O_RDONLY); ts = []
for i in range(500):
    t = time.perf_counter()
    fd = os.open(f"{d}/tmp/{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data); os.fsync(fd); os.close(fd)
    os.rename(f"{d}/tmp/{i}", f"{d}/queue/{i}"); os.fsync(dirfd)
    ts.append(time.perf_counter() - t)
print(f"{statistics.median(ts) * 1e3:.3f}")
PY
)|W1, W2"
    t0=$(now_us); dd if=/dev/zero of="$d/seq" bs=1M count=1024 conv=fsync status=none; t1=$(now_us)
    lrow "sequential write 1 GiB + fsync, MiB/s|$(echo "$t0 $t1" | awk '{printf "%.0f", 1024/(($2-$1)/1e6)}')|W3"
    t0=$(now_us); dd if="$d/seq" of="$d/copy" bs=1M conv=fsync status=none; t1=$(now_us)
    lrow "durable copy of a cached 1 GiB file (dd conv=fsync), MiB/s|$(echo "$t0 $t1" | awk '{printf "%.0f", 1024/(($2-$1)/1e6)}')|W3"
    rm -f "$d/seq" "$d/copy"
    for a in aes-256-cfb sha1 sha512 chacha20-poly1305; do
        v=$(openssl speed -seconds 2 -bytes 16384 -mr -evp $a 2>/dev/null | awk -F: '/^\+F:/ {printf "%.0f", $4/1e6}')
        case $a in
            aes-256-cfb) use="OpenPGP SEIPDv1 cipher (rs, gpg); CFB is serial";;
            sha1) use="OpenPGP MDC (Sequoia uses SHA-1 with collision detection, several times slower)";;
            sha512) use="the signature's hash (rs, gpg)";;
            chacha20-poly1305) use="NNCP's cipher";;
        esac
        lrow "openssl speed $a, 16 KiB blocks, MB/s|$v|$use"
    done
    rm -rf "$d"
fi

echo
cores=$(nproc); disk=$(df -h /var/tmp | awk 'NR==2 {print $1 " (" $2 ")"}')
echo "rs $(git describe --always --dirty 2>/dev/null) vs NNCP $(nncp-file -version 2>&1 | head -1 | awk '{print $3}'); $cores cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), disk $disk, $(date -u +%Y-%m-%d)"
echo
if [ -s "$table" ]; then
    echo "| workload | rs median | NNCP median | ratio (rs vs NNCP) | min-max | runs |"
    echo "| --- | --- | --- | --- | --- | --- |"
    awk -F'|' '{printf "|"; for (i = 1; i <= NF; i++) printf " %s |", $i; print ""}' "$table"
fi
if [ -s "$work/limits.table" ]; then
    echo
    echo "| physical limit on this machine | value | bounds |"
    echo "| --- | --- | --- |"
    awk -F'|' '{printf "|"; for (i = 1; i <= NF; i++) printf " %s |", $i; print ""}' "$work/limits.table"
fi
