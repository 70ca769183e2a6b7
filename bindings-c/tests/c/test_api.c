/* C tests of libpicsou without sockets: versions and result names, the last error, misuse
 * (NULL handles and arguments, freed handles, double frees, wrong kinds), bad configuration text,
 * too-small buffers, limits, and a full message exchange between the sans-IO endpoints of two
 * RSMs of three replicas each, routed in memory with some frames dropped. Built with
 * -Wall -Wextra -Werror against the static and the shared library, and run under valgrind and
 * AddressSanitizer by `make test`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "picsou.h"

#define SECRET "6162636465666768696a6b6c6d6e6f707172737475767778797a303132333435"

/* Two CFT RSMs of three replicas (f = 1). The endpoints never open sockets: the addresses are
 * only data here. */
static const char *CONFIG =
    "[[rsm]]\n"
    "name = \"alpha\"\n"
    "fault = \"cft\"\n"
    "f = 1\n"
    "replicas = [ { id = 0, address = \"127.0.0.1:33500\" }, { id = 1, address = \"127.0.0.1:33501\" },\n"
    "             { id = 2, address = \"127.0.0.1:33502\" } ]\n"
    "[[rsm]]\n"
    "name = \"beta\"\n"
    "fault = \"cft\"\n"
    "f = 1\n"
    "replicas = [ { id = 0, address = \"127.0.0.1:33600\" }, { id = 1, address = \"127.0.0.1:33601\" },\n"
    "             { id = 2, address = \"127.0.0.1:33602\" } ]\n"
    "[transport]\n"
    "kind = \"tcp\"\n"
    "[keys]\n"
    "secret = \"" SECRET "\"\n";

/* One replica each, with a tiny window and payload limit. */
static const char *SMALL_CONFIG =
    "[[rsm]]\n"
    "name = \"alpha\"\n"
    "fault = \"cft\"\n"
    "f = 0\n"
    "replicas = [ { id = 0, address = \"127.0.0.1:33510\" } ]\n"
    "[[rsm]]\n"
    "name = \"beta\"\n"
    "fault = \"cft\"\n"
    "f = 0\n"
    "replicas = [ { id = 0, address = \"127.0.0.1:33610\" } ]\n"
    "[tuning]\n"
    "send_window = 8\n"
    "max_buffered = 8\n"
    "recv_window = 8\n"
    "max_payload_bytes = 2048\n"
    "[keys]\n"
    "secret = \"" SECRET "\"\n";

static int contains(const char *haystack, const char *needle) {
    return strstr(haystack, needle) != NULL;
}

static void test_version_and_names(void) {
    CHECK(strcmp(picsou_version(), PICSOU_VERSION_STRING) == 0);
    char expect[64];
    snprintf(expect, sizeof expect, "%d.%d.%d", PICSOU_VERSION_MAJOR, PICSOU_VERSION_MINOR,
             PICSOU_VERSION_PATCH);
    CHECK(strcmp(picsou_version(), expect) == 0);
    CHECK(strcmp(picsou_result_name(PICSOU_OK), "PICSOU_OK") == 0);
    CHECK(strcmp(picsou_result_name(PICSOU_ERR_BUFFER_TOO_SMALL), "PICSOU_ERR_BUFFER_TOO_SMALL") == 0);
    CHECK(strcmp(picsou_result_name(12345), "PICSOU_UNKNOWN_RESULT") == 0);
}

static void test_last_error(void) {
    /* Nothing failed on this thread yet. */
    CHECK(strcmp(picsou_last_error_message(), "") == 0);
    picsou_endpoint *ep = NULL;
    CHECK_RC(picsou_endpoint_new(NULL, "alpha", 0, 0, &ep), PICSOU_ERR_NULL_ARGUMENT);
    CHECK(ep == NULL);
    const char *msg = picsou_last_error_message();
    CHECK(strcmp(msg, "picsou_endpoint_new: `config_toml` is NULL") == 0);
    /* Copy it out: too small first, with the size needed; the last error is left intact. */
    char small[8];
    size_t len = 0;
    CHECK_RC(picsou_last_error(small, sizeof small, &len), PICSOU_ERR_BUFFER_TOO_SMALL);
    CHECK(len == strlen(msg) + 1);
    CHECK_RC(picsou_last_error(NULL, 0, &len), PICSOU_ERR_BUFFER_TOO_SMALL);
    CHECK(len == strlen(msg) + 1);
    char *buf = malloc(len);
    CHECK(buf != NULL);
    size_t got = 0;
    CHECK_OK(picsou_last_error(buf, len, &got));
    CHECK(got == len - 1);
    CHECK(strcmp(buf, "picsou_endpoint_new: `config_toml` is NULL") == 0);
    free(buf);
    CHECK_RC(picsou_last_error(small, sizeof small, NULL), PICSOU_ERR_NULL_ARGUMENT);
    CHECK_RC(picsou_last_error(NULL, 5, &len), PICSOU_ERR_NULL_ARGUMENT);
    /* Success leaves the last error alone (like errno). */
    CHECK_OK(picsou_endpoint_new(CONFIG, "alpha", 0, 0, &ep));
    CHECK(contains(picsou_last_error_message(), "config_toml"));
    CHECK_OK(picsou_endpoint_free(ep));
}

static void test_bad_config(void) {
    picsou_endpoint *ep = NULL;
    picsou_node *node = NULL;
    CHECK_RC(picsou_endpoint_new("strategy = = 1", "alpha", 0, 0, &ep), PICSOU_ERR_CONFIG);
    CHECK(contains(picsou_last_error_message(), "<config_toml>:1:"));
    CHECK_RC(picsou_node_new("[[rsm]]\nname = \"a\"\n", "a", 0, &node), PICSOU_ERR_CONFIG);
    CHECK(contains(picsou_last_error_message(), "picsou_node_new: <config_toml>"));
    CHECK(node == NULL);
    /* An unknown key, with its line. */
    size_t n = strlen(CONFIG);
    char *bad = malloc(n + 32);
    CHECK(bad != NULL);
    memcpy(bad, CONFIG, n + 1);
    strcat(bad, "colour = \"red\"\n");
    CHECK_RC(picsou_endpoint_new(bad, "alpha", 0, 0, &ep), PICSOU_ERR_CONFIG);
    CHECK(contains(picsou_last_error_message(), "colour"));
    /* Invalid UTF-8. */
    memcpy(bad, CONFIG, n + 1);
    bad[10] = (char)0xff;
    CHECK_RC(picsou_endpoint_new(bad, "alpha", 0, 0, &ep), PICSOU_ERR_INVALID_UTF8);
    CHECK(contains(picsou_last_error_message(), "offset 10"));
    CHECK_RC(picsou_node_new(CONFIG, "\xc3\x28", 0, &node), PICSOU_ERR_INVALID_UTF8);
    free(bad);
    /* Wrong RSM and replica. */
    CHECK_RC(picsou_endpoint_new(CONFIG, "gamma", 0, 0, &ep), PICSOU_ERR_UNKNOWN_RSM);
    CHECK(contains(picsou_last_error_message(), "no RSM named \"gamma\""));
    CHECK_RC(picsou_endpoint_new(CONFIG, "2", 0, 0, &ep), PICSOU_ERR_UNKNOWN_RSM);
    CHECK_RC(picsou_endpoint_new(CONFIG, "beta", 3, 0, &ep), PICSOU_ERR_UNKNOWN_REPLICA);
    CHECK(contains(picsou_last_error_message(), "ids 0 to 2"));
    CHECK_RC(picsou_node_new(CONFIG, "alpha", 7, &node), PICSOU_ERR_UNKNOWN_REPLICA);
    CHECK(ep == NULL && node == NULL);
    /* An RSM by index works like its name. */
    CHECK_OK(picsou_endpoint_new(CONFIG, "1", 2, 0, &ep));
    picsou_replica me = {9, 9};
    CHECK_OK(picsou_endpoint_local(ep, &me));
    CHECK(me.rsm == 1 && me.index == 2);
    CHECK_OK(picsou_endpoint_free(ep));
}

static void test_null_and_freed_handles(void) {
    uint64_t u = 77;
    bool b = true;
    picsou_replica r = {5, 5};
    size_t len = 99;
    picsou_event ev;
    memset(&ev, 0, sizeof ev);
    uint8_t buf[16];
    /* NULL handles: an error, outputs untouched. */
    CHECK_RC(picsou_node_submit(NULL, 0, buf, 1, NULL, 0), PICSOU_ERR_NULL_ARGUMENT);
    CHECK_RC(picsou_node_try_submit(NULL, 0, buf, 1, NULL, 0), PICSOU_ERR_NULL_ARGUMENT);
    CHECK_RC(picsou_node_quacked(NULL, &u), PICSOU_ERR_NULL_ARGUMENT);
    CHECK_RC(picsou_node_received(NULL, &u), PICSOU_ERR_NULL_ARGUMENT);
    CHECK_RC(picsou_node_is_stopped(NULL, &b), PICSOU_ERR_NULL_ARGUMENT);
    CHECK_RC(picsou_node_local(NULL, &r), PICSOU_ERR_NULL_ARGUMENT);
    picsou_delivery *d = NULL;
    CHECK_RC(picsou_node_next_delivery(NULL, 0, &d), PICSOU_ERR_NULL_ARGUMENT);
    const uint8_t *data = NULL;
    CHECK_RC(picsou_delivery_get(NULL, &u, &data, &len), PICSOU_ERR_NULL_ARGUMENT);
    CHECK_RC(picsou_endpoint_submit(NULL, 0, 0, buf, 1, NULL, 0), PICSOU_ERR_NULL_ARGUMENT);
    CHECK_RC(picsou_endpoint_poll_transmit(NULL, 0, buf, sizeof buf, &r, &len), PICSOU_ERR_NULL_ARGUMENT);
    CHECK_RC(picsou_endpoint_poll_event(NULL, buf, sizeof buf, &ev, &len), PICSOU_ERR_NULL_ARGUMENT);
    CHECK_RC(picsou_endpoint_handle_timeout(NULL, 0), PICSOU_ERR_NULL_ARGUMENT);
    CHECK(u == 77 && b && r.rsm == 5 && len == 99 && data == NULL && d == NULL);
    /* Freeing NULL is a no-op. */
    CHECK_OK(picsou_node_free(NULL));
    CHECK_OK(picsou_endpoint_free(NULL));
    CHECK_OK(picsou_delivery_free(NULL));

    picsou_endpoint *ep = NULL;
    CHECK_OK(picsou_endpoint_new(CONFIG, "alpha", 1, 0, &ep));
    CHECK(ep != NULL);
    /* NULL arguments: outputs and buffers. */
    CHECK_RC(picsou_endpoint_quacked(ep, NULL), PICSOU_ERR_NULL_ARGUMENT);
    CHECK_RC(picsou_endpoint_poll_transmit(ep, 0, NULL, 10, &r, &len), PICSOU_ERR_NULL_ARGUMENT);
    CHECK_RC(picsou_endpoint_poll_event(ep, buf, sizeof buf, NULL, &len), PICSOU_ERR_NULL_ARGUMENT);
    CHECK_RC(picsou_endpoint_submit(ep, 0, 0, NULL, 3, NULL, 0), PICSOU_ERR_NULL_ARGUMENT);
    CHECK(contains(picsou_last_error_message(), "`data` is NULL"));
    CHECK_RC(picsou_endpoint_handle_frame(ep, 0, r, NULL, 3), PICSOU_ERR_NULL_ARGUMENT);
    CHECK_RC(picsou_endpoint_handle_frame(ep, 0, r, buf, SIZE_MAX), PICSOU_ERR_INVALID_ARGUMENT);
    /* A handle of the wrong kind. */
    CHECK_RC(picsou_node_quacked((const picsou_node *)ep, &u), PICSOU_ERR_INVALID_HANDLE);
    CHECK(contains(picsou_last_error_message(), "`node` is a picsou_endpoint, not a picsou_node"));
    /* An empty payload (NULL, 0) is a valid message. */
    CHECK_OK(picsou_endpoint_submit(ep, 0, 0, NULL, 0, NULL, 0));
    CHECK_OK(picsou_endpoint_next_submit(ep, &u));
    CHECK(u == 1);
    /* The names of the previous release still work for one release (and warn as deprecated). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    CHECK_OK(picsou_endpoint_transmit(ep, 0, 1, NULL, 0, NULL, 0));
    CHECK_OK(picsou_endpoint_next_transmit(ep, &u));
    CHECK(u == 2);
    CHECK_OK(picsou_endpoint_transmit_capacity(ep, &u));
    CHECK(u > 0);
    CHECK_OK(picsou_endpoint_quack(ep, &u));
    CHECK(u == 0);
#pragma GCC diagnostic pop
    /* Double free and use after free are refused, not undefined behaviour. */
    CHECK_OK(picsou_endpoint_free(ep));
    CHECK_RC(picsou_endpoint_free(ep), PICSOU_ERR_INVALID_HANDLE);
    CHECK(contains(picsou_last_error_message(), "already freed"));
    CHECK_RC(picsou_endpoint_quacked(ep, &u), PICSOU_ERR_INVALID_HANDLE);
    /* A pointer libpicsou never allocated. */
    int not_a_handle = 0;
    CHECK_RC(picsou_endpoint_free((picsou_endpoint *)&not_a_handle), PICSOU_ERR_INVALID_HANDLE);
    CHECK_RC(picsou_delivery_free((picsou_delivery *)&not_a_handle), PICSOU_ERR_INVALID_HANDLE);
}

static void test_limits_and_small_buffers(void) {
    picsou_endpoint *a = NULL, *b = NULL;
    CHECK_OK(picsou_endpoint_new(SMALL_CONFIG, "alpha", 0, 1000, &a));
    CHECK_OK(picsou_endpoint_new(SMALL_CONFIG, "beta", 0, 1000, &b));
    /* Addresses and counts of the deployment. */
    uint16_t n = 0;
    CHECK_OK(picsou_endpoint_replica_count(a, 1, &n));
    CHECK(n == 1);
    CHECK_RC(picsou_endpoint_replica_count(a, 2, &n), PICSOU_ERR_UNKNOWN_RSM);
    picsou_replica beta0 = {1, 0}, alpha0 = {0, 0}, nobody = {1, 4};
    char addr[32];
    size_t len = 0;
    CHECK_RC(picsou_endpoint_replica_address(a, beta0, addr, 5, &len), PICSOU_ERR_BUFFER_TOO_SMALL);
    CHECK(len == strlen("127.0.0.1:33610") + 1);
    CHECK_OK(picsou_endpoint_replica_address(a, beta0, addr, sizeof addr, &len));
    CHECK(strcmp(addr, "127.0.0.1:33610") == 0 && len == 15);
    CHECK_RC(picsou_endpoint_replica_address(a, nobody, addr, sizeof addr, &len), PICSOU_ERR_UNKNOWN_REPLICA);

    /* Payload limit, then the backpressure window of 8 messages. */
    uint8_t *big = calloc(1, 4096);
    CHECK(big != NULL);
    CHECK_RC(picsou_endpoint_submit(a, 1000, 0, big, 2049, NULL, 0), PICSOU_ERR_PAYLOAD_TOO_LARGE);
    CHECK(contains(picsou_last_error_message(), "2049 bytes exceeds the limit of 2048"));
    uint64_t cap = 0;
    CHECK_OK(picsou_endpoint_submit_capacity(a, &cap));
    CHECK(cap == 8);
    for (uint64_t seq = 0; seq < 8; seq++) {
        memset(big, (int)seq + 1, 2048);
        CHECK_OK(picsou_endpoint_submit(a, 1000, seq, big, 2048, NULL, 0));
    }
    CHECK_RC(picsou_endpoint_submit(a, 1000, 8, big, 10, NULL, 0), PICSOU_ERR_FULL);
    CHECK_RC(picsou_endpoint_submit(a, 1000, 9, big, 10, NULL, 0), PICSOU_ERR_OUT_OF_ORDER);
    CHECK(contains(picsou_last_error_message(), "expected seq 8, got 9"));

    /* A frame larger than the buffer: the size needed, then the same frame. */
    picsou_replica to = {7, 7};
    CHECK_RC(picsou_endpoint_poll_transmit(a, 2000, NULL, 0, &to, &len), PICSOU_ERR_BUFFER_TOO_SMALL);
    CHECK(to.rsm == 7 && len > 2048);
    size_t needed = len;
    uint8_t *frame = malloc(needed);
    CHECK(frame != NULL);
    CHECK_RC(picsou_endpoint_poll_transmit(a, 2000, frame, needed - 1, &to, &len), PICSOU_ERR_BUFFER_TOO_SMALL);
    CHECK(len == needed);
    CHECK_OK(picsou_endpoint_poll_transmit(a, 2000, frame, needed, &to, &len));
    CHECK(len == needed && to.rsm == 1 && to.index == 0);
    CHECK_OK(picsou_endpoint_handle_frame(b, 3000, alpha0, frame, len));
    free(frame);

    /* Events: too small, then delivered in order with the right bytes. */
    picsou_event ev;
    memset(&ev, 0, sizeof ev);
    uint8_t tiny[4];
    CHECK_RC(picsou_endpoint_poll_event(b, tiny, sizeof tiny, &ev, &len), PICSOU_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 2048 && ev.kind == PICSOU_EVENT_NONE);
    uint8_t *payload = malloc(2048);
    CHECK(payload != NULL);
    uint64_t next = 0;
    for (;;) {
        picsou_result rc = picsou_endpoint_poll_event(b, payload, 2048, &ev, &len);
        if (rc == PICSOU_EMPTY) break;
        CHECK_OK(rc);
        if (ev.kind != PICSOU_EVENT_DELIVER) continue;
        CHECK(ev.seq == next && ev.payload_len == 2048 && len == 2048);
        for (size_t i = 0; i < 2048; i++) CHECK(payload[i] == (uint8_t)(next + 1));
        next++;
    }
    CHECK(next == 8);
    /* A forged frame becomes an event, not an error. */
    CHECK_OK(picsou_endpoint_handle_frame(b, 3000, alpha0, (const uint8_t *)"garbage!", 8));
    CHECK_RC(picsou_endpoint_poll_event(b, NULL, 0, &ev, &len), PICSOU_ERR_BUFFER_TOO_SMALL);
    CHECK_OK(picsou_endpoint_poll_event(b, payload, 2048, &ev, &len));
    CHECK(ev.kind == PICSOU_EVENT_PEER_MISBEHAVED && ev.peer.rsm == 0 && ev.peer.index == 0);
    CHECK(len == ev.payload_len + 1 && strlen((const char *)payload) == ev.payload_len);
    CHECK(contains((const char *)payload, "bad frame"));
    free(payload);
    free(big);
    CHECK_OK(picsou_endpoint_free(a));
    CHECK_OK(picsou_endpoint_free(b));
}

/* The full exchange: both RSMs of three replicas send N messages of varying sizes (including
 * empty ones) to each other; frames are routed in memory in virtual time and one in eleven is
 * dropped. Every replica must deliver the other RSM's whole stream in order with the right
 * bytes, and every replica's QUACK must reach N. */
#define N_REPLICAS 6
#define N_MESSAGES 300u

static size_t message(uint8_t rsm, uint64_t seq, uint8_t *out) {
    size_t len = (size_t)((seq * 37u) % 300u); /* 0 to 299 bytes */
    for (size_t i = 0; i < len; i++) out[i] = (uint8_t)(rsm * 101u + seq * 7u + i);
    return len;
}

static void test_full_exchange(void) {
    picsou_endpoint *eps[N_REPLICAS];
    picsou_replica ids[N_REPLICAS];
    uint64_t now = 1000000000ull;
    for (int k = 0; k < N_REPLICAS; k++) {
        ids[k].rsm = (uint8_t)(k / 3);
        ids[k].index = (uint16_t)(k % 3);
        CHECK_OK(picsou_endpoint_new(CONFIG, k < 3 ? "alpha" : "beta", ids[k].index, now, &eps[k]));
    }
    uint8_t msg[512], expect[512];
    for (int k = 0; k < N_REPLICAS; k++) {
        for (uint64_t seq = 0; seq < N_MESSAGES; seq++) {
            size_t len = message(ids[k].rsm, seq, msg);
            CHECK_OK(picsou_endpoint_submit(eps[k], now, seq, len ? msg : NULL, len, NULL, 0));
        }
    }
    uint64_t delivered[N_REPLICAS] = {0};
    size_t frame_cap = 1024;
    uint8_t *frame = malloc(frame_cap);
    uint8_t *payload = malloc(512);
    CHECK(frame != NULL && payload != NULL);
    unsigned long frames = 0, dropped = 0, grows = 0, rounds = 0;
    for (;;) {
        int done = 1;
        for (int k = 0; k < N_REPLICAS; k++) {
            uint64_t q = 0;
            CHECK_OK(picsou_endpoint_quacked(eps[k], &q));
            if (delivered[k] < N_MESSAGES || q < N_MESSAGES) done = 0;
        }
        if (done) break;
        CHECK(++rounds < 200000);
        now += 250000; /* 250 us of virtual time per round */
        for (int k = 0; k < N_REPLICAS; k++) {
            uint64_t deadline = 0;
            picsou_result rc = picsou_endpoint_poll_timeout(eps[k], &deadline);
            CHECK(rc == PICSOU_OK || rc == PICSOU_EMPTY);
            if (rc == PICSOU_OK && deadline <= now) CHECK_OK(picsou_endpoint_handle_timeout(eps[k], now));
            for (;;) {
                picsou_replica to;
                size_t len = 0;
                rc = picsou_endpoint_poll_transmit(eps[k], now, frame, frame_cap, &to, &len);
                if (rc == PICSOU_EMPTY) break;
                if (rc == PICSOU_ERR_BUFFER_TOO_SMALL) {
                    CHECK(len > frame_cap);
                    free(frame);
                    frame_cap = len;
                    frame = malloc(frame_cap);
                    CHECK(frame != NULL);
                    grows++;
                    continue;
                }
                CHECK_OK(rc);
                CHECK(to.rsm <= 1 && to.index < 3);
                frames++;
                if (frames % 11 == 0) {
                    dropped++;
                    continue;
                }
                CHECK_OK(picsou_endpoint_handle_frame(eps[to.rsm * 3 + to.index], now, ids[k], frame, len));
            }
        }
        for (int k = 0; k < N_REPLICAS; k++) {
            for (;;) {
                picsou_event ev;
                size_t len = 0;
                picsou_result rc = picsou_endpoint_poll_event(eps[k], payload, 512, &ev, &len);
                if (rc == PICSOU_EMPTY) break;
                CHECK_OK(rc);
                CHECK(ev.kind != PICSOU_EVENT_PEER_MISBEHAVED);
                if (ev.kind != PICSOU_EVENT_DELIVER) continue;
                CHECK(ev.seq == delivered[k]);
                size_t want = message((uint8_t)(1 - ids[k].rsm), ev.seq, expect);
                CHECK(ev.payload_len == want && len == want);
                CHECK(want == 0 || memcmp(payload, expect, want) == 0);
                delivered[k]++;
            }
        }
    }
    CHECK(dropped > 0 && grows > 0);
    for (int k = 0; k < N_REPLICAS; k++) {
        uint64_t received = 0;
        CHECK_OK(picsou_endpoint_received(eps[k], &received));
        CHECK(received == N_MESSAGES);
        picsou_endpoint_stats st;
        CHECK_OK(picsou_endpoint_get_stats(eps[k], &st));
        CHECK(st.delivered == N_MESSAGES && st.quack == N_MESSAGES && st.frames_sent > 0);
        CHECK_OK(picsou_endpoint_free(eps[k]));
    }
    free(frame);
    free(payload);
    printf("  full exchange: %u messages each way, %lu frames (%lu dropped), %lu rounds\n", N_MESSAGES,
           frames, dropped, rounds);
}

int main(void) {
    test_last_error(); /* first: it checks that nothing failed on this thread yet */
    test_version_and_names();
    test_bad_config();
    test_null_and_freed_handles();
    test_limits_and_small_buffers();
    test_full_exchange();
    printf("test_api: all checks passed (libpicsou %s)\n", picsou_version());
    return 0;
}
