// C++ tests of the RAII wrappers (picsou.hpp): errors become picsou::Error with the right code
// and message, handles move and free themselves, and two endpoints (one replica per RSM) exchange
// both streams through buffers the wrappers grow as needed; a driven node takes single and
// batched submissions. Built with -Wall -Wextra -Werror
// and run under valgrind and AddressSanitizer by `make test`.
#include <picsou.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            std::fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);        \
            std::exit(1);                                                                        \
        }                                                                                        \
    } while (0)

static const std::string kConfig =
    "[[rsm]]\nname = \"alpha\"\nfault = \"cft\"\nf = 0\n"
    "replicas = [ { id = 0, address = \"127.0.0.1:33520\" } ]\n"
    "[[rsm]]\nname = \"beta\"\nfault = \"cft\"\nf = 0\n"
    "replicas = [ { id = 0, address = \"127.0.0.1:33620\" } ]\n"
    "[keys]\nsecret = \"6162636465666768696a6b6c6d6e6f707172737475767778797a303132333435\"\n";

static std::string message(unsigned rsm, uint64_t seq) {
    // Every 10th message is large, so that frames and events outgrow the initial buffers.
    std::string m = "rsm " + std::to_string(rsm) + " entry " + std::to_string(seq);
    if (seq % 10 == 9) m.append(5000, static_cast<char>('a' + seq % 26));
    return m;
}

int main() {
    // Errors carry their code and the library's message.
    try {
        picsou::Endpoint bad("strategy = 3", "alpha", 0, 0);
        CHECK(false);
    } catch (const picsou::Error &e) {
        CHECK(e.code() == PICSOU_ERR_CONFIG);
        CHECK(std::strstr(e.what(), "picsou_endpoint_new: <config_toml>:1:") != nullptr);
    }
    try {
        picsou::Node node(kConfig, "gamma", 0);
        CHECK(false);
    } catch (const picsou::Error &e) {
        CHECK(e.code() == PICSOU_ERR_UNKNOWN_RSM);
    }
    // An identity file that does not exist is a configuration error naming it.
    try {
        picsou::Node node = picsou::Node::with_identity(kConfig, "alpha", 0, "/nonexistent/alpha-0.key");
        CHECK(false);
    } catch (const picsou::Error &e) {
        CHECK(e.code() == PICSOU_ERR_CONFIG);
        CHECK(std::strstr(e.what(), "/nonexistent/alpha-0.key") != nullptr);
    }

    uint64_t now = 1000;
    picsou::Endpoint a(kConfig, "alpha", 0, now);
    picsou::Endpoint moved(kConfig, "beta", 0, now);
    picsou::Endpoint b(std::move(moved));  // the moved-from wrapper owns nothing now
    CHECK(moved.get() == nullptr && b.get() != nullptr);
    CHECK(b.local().rsm == 1 && b.replica_count(0) == 1);
    CHECK(a.replica_address(picsou_replica{1, 0}) == "127.0.0.1:33620");

    const uint64_t n = 100;
    for (uint64_t seq = 0; seq < n; seq++) {
        std::string ma = message(0, seq), mb = message(1, seq);
        CHECK(a.submit(now, seq, ma.data(), ma.size()));
        CHECK(b.submit(now, seq, mb.data(), mb.size()));
    }
    std::vector<uint8_t> frame, payload;  // start empty: the wrappers grow them
    picsou::Endpoint *eps[2] = {&a, &b};
    uint64_t delivered[2] = {0, 0};
    for (int round = 0; round < 10000 && (delivered[0] < n || delivered[1] < n || a.quacked() < n || b.quacked() < n);
         round++) {
        now += 200000;
        for (int k = 0; k < 2; k++) {
            auto deadline = eps[k]->poll_timeout();
            if (deadline && *deadline <= now) eps[k]->handle_timeout(now);
            while (auto t = eps[k]->poll_transmit(now, frame)) {
                CHECK(t->to.rsm == 1 - k && t->size <= frame.size());
                eps[1 - k]->handle_frame(now, picsou_replica{static_cast<uint8_t>(k), 0}, frame.data(), t->size);
            }
        }
        for (int k = 0; k < 2; k++) {
            while (auto ev = eps[k]->poll_event(payload)) {
                CHECK(ev->kind != PICSOU_EVENT_PEER_MISBEHAVED);
                if (ev->kind != PICSOU_EVENT_DELIVER) continue;
                std::string want = message(1 - k, ev->seq);
                CHECK(ev->seq == delivered[k] && ev->payload_len == want.size());
                CHECK(std::memcmp(payload.data(), want.data(), want.size()) == 0);
                delivered[k]++;
            }
        }
    }
    CHECK(delivered[0] == n && delivered[1] == n && a.quacked() == n && b.quacked() == n);
    CHECK(frame.size() > 5000 && payload.size() >= 5000);
    CHECK(a.stats().delivered == n && b.received() == n);

    // A driven node takes single and batched submissions in seq order; a refused batch
    // submits nothing.
    {
        picsou::Node node(kConfig, "alpha", 0);
        std::string m0 = message(0, 0);
        node.submit(0, m0.data(), m0.size());
        std::vector<std::string> texts{message(0, 1), message(0, 2), message(0, 9)};
        std::vector<picsou_message> batch;
        for (const auto &t : texts)
            batch.push_back(picsou_message{reinterpret_cast<const uint8_t *>(t.data()), t.size(), nullptr, 0});
        try {
            node.submit_batch(2, batch);
            CHECK(false);
        } catch (const picsou::Error &e) {
            CHECK(e.code() == PICSOU_ERR_OUT_OF_ORDER);
        }
        node.submit_batch(1, batch);
        try {
            node.submit_batch(1, batch);
            CHECK(false);
        } catch (const picsou::Error &e) {
            CHECK(e.code() == PICSOU_ERR_OUT_OF_ORDER && std::strstr(e.what(), "expected seq 4") != nullptr);
        }
        std::string m4 = message(0, 4);
        node.submit(4, m4.data(), m4.size());
    }
    std::printf("test_cpp: all checks passed (libpicsou %s)\n", picsou::version().c_str());
    return 0;
}
