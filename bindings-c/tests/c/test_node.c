/* C tests of libpicsou's driven nodes: two RSMs of three replicas each (CFT, f = 1), six nodes
 * in this process over TCP on loopback (ports 23700-23702 and 23800-23802). Once connected to
 * its peers, every replica submits its RSM's stream (half of it one message at a time, half in
 * batches); five replicas poll their deliveries and one takes them by callback. Also: misuse of
 * nodes (address in use, polling a callback node, freeing a node from its own callback,
 * out-of-order, oversize and NULL submissions, single and batched, double frees) and clean
 * shutdown. Built with
 * -Wall -Wextra -Werror against the static and the shared library, and run under valgrind and
 * AddressSanitizer by `make test`. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "picsou.h"

static const char *CONFIG =
    "[[rsm]]\n"
    "name = \"alpha\"\n"
    "fault = \"cft\"\n"
    "f = 1\n"
    "replicas = [ { id = 0, address = \"127.0.0.1:23700\" }, { id = 1, address = \"127.0.0.1:23701\" },\n"
    "             { id = 2, address = \"127.0.0.1:23702\" } ]\n"
    "[[rsm]]\n"
    "name = \"beta\"\n"
    "fault = \"cft\"\n"
    "f = 1\n"
    "replicas = [ { id = 0, address = \"127.0.0.1:23800\" }, { id = 1, address = \"127.0.0.1:23801\" },\n"
    "             { id = 2, address = \"127.0.0.1:23802\" } ]\n"
    "[transport]\n"
    "kind = \"tcp\"\n"
    "[tuning]\n"
    "max_payload_bytes = 4096\n"
    "[keys]\n"
    "secret = \"6162636465666768696a6b6c6d6e6f707172737475767778797a303132333435\"\n";

#define N_MESSAGES 200u
#define BATCH 7u
#define PER_RSM 3
#define N_NODES (2 * PER_RSM)
#define CB (N_NODES - 1) /* the node that delivers by callback: beta/2 */
#define TIMEOUT_S 60

static size_t message(uint8_t rsm, uint64_t seq, uint8_t *out) {
    int n = snprintf((char *)out, 64, "rsm %u says %llu", (unsigned)rsm, (unsigned long long)seq);
    return (size_t)n;
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

/* Waits until `node` is connected to every peer in both directions (its published statistics
 * count live connections), so that no first copy is dropped by a transport still dialling. */
static void wait_connected(picsou_node *node, double deadline) {
    uint16_t n0 = 0, n1 = 0;
    CHECK_OK(picsou_node_replica_count(node, 0, &n0));
    CHECK_OK(picsou_node_replica_count(node, 1, &n1));
    CHECK(n0 == PER_RSM && n1 == PER_RSM);
    CHECK_RC(picsou_node_replica_count(node, 2, &n0), PICSOU_ERR_UNKNOWN_RSM);
    uint64_t want = 2u * ((uint64_t)n0 + n1 - 1);
    for (;;) {
        picsou_node_stats st;
        CHECK_OK(picsou_node_get_stats(node, &st));
        if (st.transport.connects >= st.transport.disconnects + want) return;
        CHECK(now_s() < deadline);
        sleep_ms(10);
    }
}

/* What the callback node saw; written by libpicsou's thread, read by the test's. */
struct seen {
    pthread_mutex_t lock;
    picsou_node *node;
    uint64_t next;
    int bad;
    picsou_result free_from_callback;
};

static void on_delivery(void *user_data, uint64_t seq, const uint8_t *data, size_t len) {
    struct seen *s = user_data;
    uint8_t expect[64];
    size_t want = message(0, seq, expect);
    pthread_mutex_lock(&s->lock);
    if (s->next == 0) {
        /* Misuse: a node cannot be freed from its own callback (it would wait for itself). */
        s->free_from_callback = picsou_node_free(s->node);
    }
    if (seq != s->next || len != want || memcmp(data, expect, len) != 0) s->bad = 1;
    s->next++;
    pthread_mutex_unlock(&s->lock);
}

int main(void) {
    const char *rsms[2] = {"alpha", "beta"};
    picsou_node *nodes[N_NODES];
    for (int k = 0; k < N_NODES; k++) {
        nodes[k] = NULL;
        CHECK_OK(picsou_node_new(CONFIG, rsms[k / PER_RSM], (uint16_t)(k % PER_RSM), &nodes[k]));
        CHECK(nodes[k] != NULL);
        picsou_replica me;
        CHECK_OK(picsou_node_local(nodes[k], &me));
        CHECK(me.rsm == k / PER_RSM && me.index == k % PER_RSM);
    }
    /* The same replica twice: its address is taken. */
    picsou_node *again = NULL;
    CHECK_RC(picsou_node_new(CONFIG, "beta", 2, &again), PICSOU_ERR_TRANSPORT);
    CHECK(again == NULL);
    CHECK(strstr(picsou_last_error_message(), "127.0.0.1:23802") != NULL);

    /* beta/2 (nodes[CB]) delivers by callback. */
    struct seen seen;
    memset(&seen, 0, sizeof seen);
    pthread_mutex_init(&seen.lock, NULL);
    seen.node = nodes[CB];
    seen.free_from_callback = PICSOU_OK;
    CHECK_RC(picsou_node_set_delivery_callback(nodes[CB], NULL, NULL), PICSOU_ERR_NULL_ARGUMENT);
    CHECK_OK(picsou_node_set_delivery_callback(nodes[CB], on_delivery, &seen));
    CHECK_RC(picsou_node_set_delivery_callback(nodes[CB], on_delivery, &seen), PICSOU_ERR_INVALID_STATE);
    picsou_delivery *d = NULL;
    CHECK_RC(picsou_node_next_delivery(nodes[CB], 0, &d), PICSOU_ERR_INVALID_STATE);
    CHECK(d == NULL);

    /* Misuse of submit. */
    uint8_t msg[8192];
    memset(msg, 'x', sizeof msg);
    CHECK_RC(picsou_node_submit(nodes[0], 1, msg, 10, NULL, 0), PICSOU_ERR_OUT_OF_ORDER);
    CHECK(strstr(picsou_last_error_message(), "expected seq 0, got 1") != NULL);
    CHECK_RC(picsou_node_submit(nodes[0], 0, msg, 4097, NULL, 0), PICSOU_ERR_PAYLOAD_TOO_LARGE);
    CHECK_RC(picsou_node_submit(nodes[0], 0, NULL, 10, NULL, 0), PICSOU_ERR_NULL_ARGUMENT);

    double deadline = now_s() + TIMEOUT_S;
    for (int k = 0; k < N_NODES; k++) wait_connected(nodes[k], deadline);

    /* Every replica submits its RSM's whole stream (the same at every replica, as its log):
     * the first half one message at a time, the rest in batches. */
    for (uint64_t seq = 0; seq < N_MESSAGES / 2; seq++) {
        for (int k = 0; k < N_NODES; k++) {
            size_t len = message((uint8_t)(k / PER_RSM), seq, msg);
            if (seq % 2 == 0)
                CHECK_OK(picsou_node_submit(nodes[k], seq, msg, len, NULL, 0));
            else {
                picsou_result rc;
                while ((rc = picsou_node_try_submit(nodes[k], seq, msg, len, NULL, 0)) == PICSOU_ERR_FULL) {
                }
                CHECK_OK(rc);
            }
        }
    }

    for (uint64_t first = N_MESSAGES / 2; first < N_MESSAGES; first += BATCH) {
        static uint8_t bufs[BATCH][64];
        picsou_message batch[BATCH];
        size_t count = N_MESSAGES - first < BATCH ? (size_t)(N_MESSAGES - first) : BATCH;
        for (int k = 0; k < N_NODES; k++) {
            for (size_t i = 0; i < count; i++) {
                batch[i].data = bufs[i];
                batch[i].len = message((uint8_t)(k / PER_RSM), first + i, bufs[i]);
                batch[i].proof = NULL;
                batch[i].proof_len = 0;
            }
            if (first == N_MESSAGES / 2) {
                /* Misuse: a refused batch submits nothing (the right one then goes through). */
                CHECK_RC(picsou_node_submit_batch(nodes[k], first + 1, batch, count), PICSOU_ERR_OUT_OF_ORDER);
                CHECK_RC(picsou_node_submit_batch(nodes[k], first, NULL, count), PICSOU_ERR_NULL_ARGUMENT);
                CHECK_OK(picsou_node_submit_batch(nodes[k], first, NULL, 0));
                size_t keep = batch[count - 1].len;
                batch[count - 1].len = 4097; /* over max_payload_bytes: refused before reading */
                CHECK_RC(picsou_node_submit_batch(nodes[k], first, batch, count), PICSOU_ERR_PAYLOAD_TOO_LARGE);
                batch[count - 1].len = keep;
                batch[1].data = NULL;
                CHECK_RC(picsou_node_submit_batch(nodes[k], first, batch, count), PICSOU_ERR_NULL_ARGUMENT);
                batch[1].data = bufs[1];
            }
            if ((first / BATCH) % 2 == 0)
                CHECK_OK(picsou_node_submit_batch(nodes[k], first, batch, count));
            else {
                picsou_result rc;
                while ((rc = picsou_node_submit_batch_timeout(nodes[k], first, batch, count, 0)) == PICSOU_ERR_FULL) {
                }
                CHECK_OK(rc);
            }
        }
    }

    /* The polling replicas take the other RSM's stream. */
    uint64_t next[CB] = {0};
    for (;;) {
        int all = 1;
        for (int k = 0; k < CB; k++) all = all && next[k] == N_MESSAGES;
        if (all) break;
        if (now_s() > deadline) {
            for (int k = 0; k < N_NODES; k++) {
                uint64_t q = 0, r = 0;
                picsou_node_quacked(nodes[k], &q);
                picsou_node_received(nodes[k], &r);
                fprintf(stderr, "node %d: quacked %llu, received %llu, polled %llu\n", k, (unsigned long long)q,
                        (unsigned long long)r, (unsigned long long)(k < CB ? next[k] : seen.next));
            }
        }
        CHECK(now_s() < deadline);
        for (int k = 0; k < CB; k++) {
            if (next[k] == N_MESSAGES) continue;
            picsou_result rc = picsou_node_next_delivery(nodes[k], 10, &d);
            if (rc == PICSOU_EMPTY) continue;
            CHECK_OK(rc);
            uint64_t seq = 0;
            const uint8_t *data = NULL;
            size_t len = 0;
            CHECK_OK(picsou_delivery_get(d, &seq, &data, &len));
            uint8_t expect[64];
            size_t want = message((uint8_t)(1 - k / PER_RSM), seq, expect);
            CHECK(seq == next[k] && len == want && memcmp(data, expect, len) == 0);
            const uint8_t *proof = NULL;
            size_t proof_len = 0;
            CHECK_RC(picsou_delivery_proof(d, &proof, &proof_len), PICSOU_EMPTY);
            CHECK_OK(picsou_delivery_free(d));
            if (seq == 0) CHECK_RC(picsou_delivery_free(d), PICSOU_ERR_INVALID_HANDLE);
            next[k]++;
        }
    }
    for (;;) {
        pthread_mutex_lock(&seen.lock);
        uint64_t got = seen.next;
        int bad = seen.bad;
        pthread_mutex_unlock(&seen.lock);
        CHECK(!bad);
        if (got == N_MESSAGES) break;
        CHECK(now_s() < deadline);
        sleep_ms(5);
    }
    CHECK(seen.free_from_callback == PICSOU_ERR_INVALID_STATE);

    /* Both streams are QUACKed everywhere; nothing more is delivered. */
    for (int k = 0; k < N_NODES; k++) {
        uint64_t q = 0, r = 0;
        for (;;) {
            CHECK_OK(picsou_node_quacked(nodes[k], &q));
            if (q == N_MESSAGES) break;
            CHECK(now_s() < deadline);
            sleep_ms(5);
        }
        CHECK_OK(picsou_node_received(nodes[k], &r));
        CHECK(r == N_MESSAGES);
        if (k < CB) CHECK_RC(picsou_node_next_delivery(nodes[k], 0, &d), PICSOU_EMPTY);
        bool stopped = true;
        CHECK_OK(picsou_node_is_stopped(nodes[k], &stopped));
        CHECK(!stopped);
        /* Statistics are published every [node] stats_interval_ms (100 ms). */
        picsou_node_stats st;
        for (;;) {
            CHECK_OK(picsou_node_get_stats(nodes[k], &st));
            if (st.delivered == N_MESSAGES && st.transmitted == N_MESSAGES && st.engine.quack == N_MESSAGES) break;
            CHECK(now_s() < deadline);
            sleep_ms(5);
        }
        CHECK(st.loops > 0 && st.engine.delivered == N_MESSAGES && st.transport.frames_received > 0);
    }
    /* A submission past the stream, then shutdown: free stops and joins every thread. */
    CHECK_RC(picsou_node_try_submit(nodes[0], N_MESSAGES + 1, msg, 1, NULL, 0), PICSOU_ERR_OUT_OF_ORDER);
    for (int k = 0; k < N_NODES; k++) CHECK_OK(picsou_node_free(nodes[k]));
    CHECK_RC(picsou_node_free(nodes[0]), PICSOU_ERR_INVALID_HANDLE);
    uint64_t q;
    CHECK_RC(picsou_node_quacked(nodes[CB], &q), PICSOU_ERR_INVALID_HANDLE);
    pthread_mutex_destroy(&seen.lock);
    printf("test_node: all checks passed (%u messages each way over TCP, 3+3 replicas)\n", N_MESSAGES);
    return 0;
}
