/* counter: a toy replicated counter that mirrors its increments to another RSM through
 * libpicsou.
 *
 *     counter CONFIG.toml RSM REPLICA N [LINGER_MS]
 *
 * Runs replica REPLICA of RSM RSM (its name in CONFIG.toml, or 0 / 1) and waits until it is
 * connected to every other replica (start them in any order). The RSM's log commits N
 * increments; like every replica of its RSM, this one applies them to its local counter and
 * submits each, in log order, as message 0, 1, ..., N-1 of the RSM's stream to the other RSM.
 * Increments of the other RSM arrive through the delivery callback, in order, exactly once, and
 * are applied to the mirrored counter. When all N of the other RSM's increments are applied
 * and all N of its own are QUACKed (held by the other RSM), the replica prints one line
 *
 *     counter alpha/0: local=... submitted=N quacked=N mirrored=... applied=N ok
 *
 * keeps serving its peers for LINGER_MS (default 2000) so that slower replicas catch up, and
 * exits 0 (1 on a timeout or an error). Build it with
 *
 *     cc counter.c $(pkg-config --cflags --libs picsou) -o counter
 *
 * and run every replica of both RSMs (examples/run_counter.sh does, and checks that every
 * replica's mirrored counter equals the other RSM's local counter). */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <picsou.h>

#define TIMEOUT_S 120

/* The increment that entry `seq` of RSM `rsm`'s log commits: any deterministic function will
 * do (every replica of an RSM commits the same log). */
static int64_t increment(unsigned rsm, uint64_t seq) {
    return 1 + (int64_t)((seq * (rsm + 3u)) % 7u);
}

/* The mirrored counter, updated by libpicsou's delivery thread. */
struct mirror {
    pthread_mutex_t lock;
    int64_t value;
    uint64_t applied; /* increments applied; also the seq expected next */
    int out_of_order;
    uint64_t total;
    const char *who;
};

static void on_delivery(void *user_data, uint64_t seq, const uint8_t *data, size_t len) {
    struct mirror *m = user_data;
    pthread_mutex_lock(&m->lock);
    if (seq != m->applied || len != 8) {
        m->out_of_order = 1;
    } else {
        uint64_t raw = 0;
        for (int i = 7; i >= 0; i--) raw = (raw << 8) | data[i]; /* little-endian */
        m->value += (int64_t)raw;
        m->applied++;
        if (m->applied % (m->total / 4 ? m->total / 4 : 1) == 0)
            printf("counter %s: mirrored counter = %" PRId64 " after %" PRIu64 " increments\n", m->who,
                   m->value, m->applied);
        fflush(stdout);
    }
    pthread_mutex_unlock(&m->lock);
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "counter: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *text = malloc(cap);
    while (text) {
        len += fread(text + len, 1, cap - len - 1, f);
        if (len < cap - 1) break;
        char *bigger = realloc(text, cap *= 2);
        if (!bigger) free(text);
        text = bigger;
    }
    fclose(f);
    if (text) text[len] = '\0';
    return text;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits until the node is connected to every other replica of both RSMs, in both directions:
 * the transport drops frames to peers it is not connected to, and a message whose first copy
 * and every resend were dropped that way is not sent again. 0 on success, -1 on timeout. */
static int wait_connected(picsou_node *node, double deadline) {
    uint16_t n0 = 0, n1 = 0;
    if (picsou_node_replica_count(node, 0, &n0) != PICSOU_OK || picsou_node_replica_count(node, 1, &n1) != PICSOU_OK)
        return -1;
    uint64_t want = 2u * ((uint64_t)n0 + n1 - 1);
    for (;;) {
        picsou_node_stats st;
        if (picsou_node_get_stats(node, &st) != PICSOU_OK) return -1;
        if (st.transport.connects >= st.transport.disconnects + want) return 0;
        if (now_s() > deadline) return -1;
        sleep_ms(20);
    }
}

int main(int argc, char **argv) {
    if (argc < 5 || argc > 6) {
        fprintf(stderr, "usage: %s CONFIG.toml RSM REPLICA N [LINGER_MS]\n", argv[0]);
        return 2;
    }
    const char *rsm = argv[2];
    uint16_t replica = (uint16_t)strtoul(argv[3], NULL, 10);
    uint64_t n = strtoull(argv[4], NULL, 10);
    long linger_ms = argc == 6 ? strtol(argv[5], NULL, 10) : 2000;
    char who[64];
    snprintf(who, sizeof who, "%s/%u", rsm, (unsigned)replica);

    char *config = read_file(argv[1]);
    if (!config) return 2;
    picsou_node *node = NULL;
    picsou_result rc = picsou_node_new(config, rsm, replica, &node);
    free(config);
    if (rc != PICSOU_OK) {
        fprintf(stderr, "counter %s: %s: %s\n", who, picsou_result_name(rc), picsou_last_error_message());
        return 2;
    }
    picsou_replica me;
    picsou_node_local(node, &me);

    struct mirror mirror = {.value = 0, .applied = 0, .out_of_order = 0, .total = n, .who = who};
    pthread_mutex_init(&mirror.lock, NULL);
    rc = picsou_node_set_delivery_callback(node, on_delivery, &mirror);
    if (rc != PICSOU_OK) {
        fprintf(stderr, "counter %s: %s\n", who, picsou_last_error_message());
        picsou_node_free(node);
        return 1;
    }

    double deadline = now_s() + TIMEOUT_S;
    int ok = 1;
    if (wait_connected(node, deadline) != 0) {
        fprintf(stderr, "counter %s: not connected to every other replica after %d s\n", who, TIMEOUT_S);
        ok = 0;
    }

    /* Apply and submit this RSM's committed increments, in log order. */
    int64_t local = 0;
    for (uint64_t seq = 0; seq < n && ok; seq++) {
        int64_t inc = increment(me.rsm, seq);
        local += inc;
        uint8_t msg[8];
        for (int i = 0; i < 8; i++) msg[i] = (uint8_t)((uint64_t)inc >> (8 * i));
        rc = picsou_node_submit(node, seq, msg, sizeof msg, NULL, 0);
        if (rc != PICSOU_OK) {
            fprintf(stderr, "counter %s: submit %" PRIu64 ": %s\n", who, seq, picsou_last_error_message());
            ok = 0;
        }
    }

    /* Wait for the other RSM's increments and for ours to be held by the other RSM. */
    uint64_t quacked = 0, applied = 0;
    int64_t mirrored = 0;
    while (ok) {
        picsou_node_quacked(node, &quacked);
        pthread_mutex_lock(&mirror.lock);
        applied = mirror.applied;
        mirrored = mirror.value;
        if (mirror.out_of_order) ok = 0;
        pthread_mutex_unlock(&mirror.lock);
        if (!ok) fprintf(stderr, "counter %s: a delivery arrived out of order\n", who);
        if (applied == n && quacked == n) break;
        if (now_s() > deadline) {
            fprintf(stderr, "counter %s: timed out: applied %" PRIu64 "/%" PRIu64 ", quacked %" PRIu64 "\n", who,
                    applied, n, quacked);
            ok = 0;
        }
        sleep_ms(10);
    }
    printf("counter %s: local=%" PRId64 " submitted=%" PRIu64 " quacked=%" PRIu64 " mirrored=%" PRId64
           " applied=%" PRIu64 " %s\n",
           who, local, n, quacked, mirrored, applied, ok ? "ok" : "FAILED");
    fflush(stdout);

    /* Keep serving peers (forwards, repairs, acks) while slower replicas finish. */
    if (ok) sleep_ms(linger_ms);
    rc = picsou_node_free(node);
    if (rc != PICSOU_OK) {
        fprintf(stderr, "counter %s: %s\n", who, picsou_last_error_message());
        ok = 0;
    }
    pthread_mutex_destroy(&mirror.lock);
    return ok ? 0 : 1;
}
