// replica: the counter example (counter.c) in C++, with libpicsou's RAII wrappers (picsou.hpp).
//
//     replica CONFIG.toml RSM REPLICA N [LINGER_MS]
//
// Same behaviour and output as counter.c, so the two interoperate: one RSM may run counter and
// the other replica. Here a thread submits the RSM's committed increments while the main thread
// polls the other RSM's deliveries (counter.c takes them by callback). Build it with
//
//     c++ -std=c++17 replica.cpp $(pkg-config --cflags --libs picsou) -o replica
#include <picsou.hpp>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

namespace {

constexpr auto kTimeout = std::chrono::seconds(120);

// The increment that entry `seq` of RSM `rsm`'s log commits (as in counter.c).
int64_t increment(unsigned rsm, uint64_t seq) { return 1 + static_cast<int64_t>((seq * (rsm + 3u)) % 7u); }

// Waits until the node is connected to every other replica of both RSMs, in both directions
// (see counter.c): false on timeout.
bool wait_connected(const picsou::Node &node, std::chrono::steady_clock::time_point deadline) {
    const uint64_t want = 2u * (uint64_t{node.replica_count(0)} + node.replica_count(1) - 1);
    for (;;) {
        picsou_node_stats st = node.stats();
        if (st.transport.connects >= st.transport.disconnects + want) return true;
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

std::string read_file(const char *path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(std::string("cannot open ") + path);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 5 || argc > 6) {
        std::fprintf(stderr, "usage: %s CONFIG.toml RSM REPLICA N [LINGER_MS]\n", argv[0]);
        return 2;
    }
    const std::string rsm = argv[2];
    const auto replica = static_cast<uint16_t>(std::stoul(argv[3]));
    const uint64_t n = std::stoull(argv[4]);
    const long linger_ms = argc == 6 ? std::stol(argv[5]) : 2000;
    const std::string who = rsm + "/" + std::to_string(replica);

    std::optional<picsou::Node> node;
    try {
        node.emplace(read_file(argv[1]), rsm, replica);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "replica %s: %s\n", who.c_str(), e.what());
        return 2;
    }
    const unsigned me = node->local().rsm;
    const auto deadline = std::chrono::steady_clock::now() + kTimeout;
    if (!wait_connected(*node, deadline)) {
        std::fprintf(stderr, "replica %s: not connected to every other replica in time\n", who.c_str());
        return 1;
    }

    // Apply and submit this RSM's committed increments, in log order, on a thread of their own.
    std::atomic<bool> submit_failed{false};
    int64_t local = 0;
    for (uint64_t seq = 0; seq < n; seq++) local += increment(me, seq);
    std::thread submitter([&] {
        try {
            for (uint64_t seq = 0; seq < n; seq++) {
                const auto inc = static_cast<uint64_t>(increment(me, seq));
                uint8_t msg[8];
                for (int i = 0; i < 8; i++) msg[i] = static_cast<uint8_t>(inc >> (8 * i));
                node->submit(seq, msg, sizeof msg);
            }
        } catch (const picsou::Error &e) {
            std::fprintf(stderr, "replica %s: submit: %s\n", who.c_str(), e.what());
            submit_failed = true;
        }
    });

    // Apply the other RSM's increments as they are delivered, in order.
    int64_t mirrored = 0;
    uint64_t applied = 0, quacked = 0;
    bool ok = true;
    try {
        while (ok) {
            quacked = node->quacked();
            if ((applied == n && quacked == n) || submit_failed) break;
            if (std::chrono::steady_clock::now() > deadline) {
                std::fprintf(stderr, "replica %s: timed out: applied %" PRIu64 "/%" PRIu64 ", quacked %" PRIu64 "\n",
                             who.c_str(), applied, n, quacked);
                ok = false;
                break;
            }
            auto d = node->next_delivery(std::chrono::milliseconds(10));
            if (!d) continue;
            if (d->seq() != applied || d->size() != 8) {
                std::fprintf(stderr, "replica %s: delivery %" PRIu64 " out of order or malformed\n", who.c_str(),
                             d->seq());
                ok = false;
                break;
            }
            uint64_t raw = 0;
            for (int i = 7; i >= 0; i--) raw = (raw << 8) | d->data()[i];
            mirrored += static_cast<int64_t>(raw);
            applied++;
            if (applied % (n / 4 ? n / 4 : 1) == 0)
                std::printf("replica %s: mirrored counter = %" PRId64 " after %" PRIu64 " increments\n", who.c_str(),
                            mirrored, applied);
        }
    } catch (const picsou::Error &e) {
        std::fprintf(stderr, "replica %s: %s\n", who.c_str(), e.what());
        ok = false;
    }
    submitter.join();
    ok = ok && !submit_failed;
    std::printf("counter %s: local=%" PRId64 " submitted=%" PRIu64 " quacked=%" PRIu64 " mirrored=%" PRId64
                " applied=%" PRIu64 " %s\n",
                who.c_str(), local, n, quacked, mirrored, applied, ok ? "ok" : "FAILED");
    std::fflush(stdout);

    // Keep serving peers while slower replicas finish, then stop (the destructor would too).
    if (ok) std::this_thread::sleep_for(std::chrono::milliseconds(linger_ms));
    try {
        node->close();
    } catch (const picsou::Error &e) {
        std::fprintf(stderr, "replica %s: %s\n", who.c_str(), e.what());
        ok = false;
    }
    return ok ? 0 : 1;
}
