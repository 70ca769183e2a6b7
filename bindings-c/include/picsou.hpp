/* picsou.hpp: C++17 RAII wrappers over libpicsou's C API (picsou.h). Header-only; link
 * libpicsou as for C. Handles are move-only and freed by their destructors; every error becomes
 * a picsou::Error carrying the result code and the library's message. Thread safety is that of
 * the C functions underneath (see picsou.h). */
#ifndef PICSOU_HPP
#define PICSOU_HPP

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "picsou.h"

namespace picsou {

/** A failed libpicsou call: its result code and the thread's last error message. */
class Error : public std::runtime_error {
public:
    Error(picsou_result code, const std::string &message) : std::runtime_error(message), code_(code) {}
    picsou_result code() const noexcept { return code_; }

private:
    picsou_result code_;
};

/** Throws an Error unless `rc` is PICSOU_OK. */
inline void check(picsou_result rc) {
    if (rc != PICSOU_OK) throw Error(rc, picsou_last_error_message());
}

/** The version of the library linked. */
inline std::string version() { return picsou_version(); }

/** A message of the incoming stream taken by Node::next_delivery (owns a picsou_delivery). */
class Delivery {
public:
    explicit Delivery(picsou_delivery *d) : d_(d) {
        const uint8_t *data = nullptr;
        size_t len = 0;
        check(picsou_delivery_get(d_.get(), &seq_, &data, &len));
        data_ = data;
        size_ = len;
    }
    uint64_t seq() const noexcept { return seq_; }
    const uint8_t *data() const noexcept { return data_; }
    size_t size() const noexcept { return size_; }
    std::string_view view() const noexcept { return {reinterpret_cast<const char *>(data_), size_}; }
    /** The commit proof (application-managed dissemination only). */
    std::optional<std::string_view> proof() const {
        const uint8_t *p = nullptr;
        size_t len = 0;
        picsou_result rc = picsou_delivery_proof(d_.get(), &p, &len);
        if (rc == PICSOU_EMPTY) return std::nullopt;
        check(rc);
        return std::string_view(reinterpret_cast<const char *>(p), len);
    }

private:
    struct Free {
        void operator()(picsou_delivery *d) const noexcept { picsou_delivery_free(d); }
    };
    std::unique_ptr<picsou_delivery, Free> d_;
    uint64_t seq_ = 0;
    const uint8_t *data_ = nullptr;
    size_t size_ = 0;
};

/** A driven node: one replica running on its own thread over its configured transport. */
class Node {
public:
    /** Called for each delivery, in order, on a libpicsou thread: (seq, data, len). It must not
     * throw (an exception escaping it terminates the process). */
    using Callback = std::function<void(uint64_t, const uint8_t *, size_t)>;

    Node(const std::string &config_toml, const std::string &rsm, uint16_t replica) {
        check(picsou_node_new(config_toml.c_str(), rsm.c_str(), replica, &node_));
    }
    Node(const std::string &config_toml, const std::string &rsm, uint16_t replica, uint64_t transmit_from,
         uint64_t receive_from) {
        check(picsou_node_new_resuming(config_toml.c_str(), rsm.c_str(), replica, transmit_from, receive_from,
                                       &node_));
    }
    /// A replica of a deployment with per-replica keys, reading its secret identity from
    /// `identity_file` (written by `picsou keygen`) and resuming at `transmit_from` /
    /// `receive_from` (0 and 0 for a fresh start).
    static Node with_identity(const std::string &config_toml, const std::string &rsm, uint16_t replica,
                              const std::string &identity_file, uint64_t transmit_from = 0,
                              uint64_t receive_from = 0) {
        Node n;
        check(picsou_node_new_with_identity(config_toml.c_str(), rsm.c_str(), replica, identity_file.c_str(),
                                            transmit_from, receive_from, &n.node_));
        return n;
    }
    Node(const Node &) = delete;
    Node &operator=(const Node &) = delete;
    Node(Node &&other) noexcept
        : node_(std::exchange(other.node_, nullptr)), callback_(std::move(other.callback_)) {}
    Node &operator=(Node &&other) noexcept {
        if (this != &other) {
            reset();
            node_ = std::exchange(other.node_, nullptr);
            callback_ = std::move(other.callback_);
        }
        return *this;
    }
    /** Stops the node and joins its threads (errors are ignored here: call close() to see them). */
    ~Node() { reset(); }

    /** Stops the node now; throws if its thread had failed. */
    void close() {
        picsou_node *n = std::exchange(node_, nullptr);
        check(picsou_node_free(n));
    }

    picsou_replica local() const {
        picsou_replica r{};
        check(picsou_node_local(node_, &r));
        return r;
    }
    /** Replicas of RSM `rsm` (0 or 1) in the deployment. */
    uint16_t replica_count(uint8_t rsm) const {
        uint16_t n = 0;
        check(picsou_node_replica_count(node_, rsm, &n));
        return n;
    }
    void submit(uint64_t seq, const void *data, size_t len, const void *proof = nullptr, size_t proof_len = 0) {
        check(picsou_node_submit(node_, seq, static_cast<const uint8_t *>(data), len,
                                 static_cast<const uint8_t *>(proof), proof_len));
    }
    /** False if the submit queue is full (retry with the same seq). */
    bool try_submit(uint64_t seq, const void *data, size_t len, const void *proof = nullptr, size_t proof_len = 0) {
        picsou_result rc = picsou_node_try_submit(node_, seq, static_cast<const uint8_t *>(data), len,
                                                  static_cast<const uint8_t *>(proof), proof_len);
        if (rc == PICSOU_ERR_FULL) return false;
        check(rc);
        return true;
    }
    /** Submits `messages` as seqs `first, first + 1, ...` in one operation (all or nothing). */
    void submit_batch(uint64_t first, const std::vector<picsou_message> &messages) {
        check(picsou_node_submit_batch(node_, first, messages.data(), messages.size()));
    }
    /** The next delivery, or nullopt if none arrived within `timeout`. */
    std::optional<Delivery> next_delivery(std::chrono::milliseconds timeout) {
        auto ms = timeout.count() < 0 ? 0 : timeout.count() > UINT32_MAX ? UINT32_MAX : timeout.count();
        picsou_delivery *d = nullptr;
        picsou_result rc = picsou_node_next_delivery(node_, static_cast<uint32_t>(ms), &d);
        if (rc == PICSOU_EMPTY) return std::nullopt;
        check(rc);
        return Delivery(d);
    }
    /** Delivers by callback from now on (once per node). */
    void on_delivery(Callback callback) {
        auto owned = std::make_unique<Callback>(std::move(callback));
        check(picsou_node_set_delivery_callback(node_, &Node::trampoline, owned.get()));
        callback_ = std::move(owned);
    }
    uint64_t quacked() const {
        uint64_t q = 0;
        check(picsou_node_quacked(node_, &q));
        return q;
    }
    uint64_t received() const {
        uint64_t r = 0;
        check(picsou_node_received(node_, &r));
        return r;
    }
    void local_has(uint64_t seq) { check(picsou_node_local_has(node_, seq)); }
    picsou_node_stats stats() const {
        picsou_node_stats s{};
        check(picsou_node_get_stats(node_, &s));
        return s;
    }
    bool stopped() const {
        bool b = false;
        check(picsou_node_is_stopped(node_, &b));
        return b;
    }
    picsou_node *get() const noexcept { return node_; }

private:
    Node() = default;
    static void trampoline(void *user_data, uint64_t seq, const uint8_t *data, size_t len) noexcept {
        (*static_cast<Callback *>(user_data))(seq, data, len);
    }
    void reset() noexcept {
        if (node_ != nullptr) picsou_node_free(std::exchange(node_, nullptr));
        // The callback thread is joined by picsou_node_free: the callback can go now.
        callback_.reset();
    }

    picsou_node *node_ = nullptr;
    std::unique_ptr<Callback> callback_;
};

/** A frame to send, from Endpoint::poll_transmit: its destination and size (bytes at the start
 * of the buffer passed in). */
struct Transmit {
    picsou_replica to;
    size_t size;
};

/** The sans-IO engine of one replica, for RSMs that own their networking. Times are
 * nanoseconds on one monotonic clock of the caller's choice. */
class Endpoint {
public:
    Endpoint(const std::string &config_toml, const std::string &rsm, uint16_t replica, uint64_t now_ns) {
        check(picsou_endpoint_new(config_toml.c_str(), rsm.c_str(), replica, now_ns, &ep_));
    }
    Endpoint(const Endpoint &) = delete;
    Endpoint &operator=(const Endpoint &) = delete;
    Endpoint(Endpoint &&other) noexcept : ep_(std::exchange(other.ep_, nullptr)) {}
    Endpoint &operator=(Endpoint &&other) noexcept {
        if (this != &other) {
            if (ep_ != nullptr) picsou_endpoint_free(ep_);
            ep_ = std::exchange(other.ep_, nullptr);
        }
        return *this;
    }
    ~Endpoint() {
        if (ep_ != nullptr) picsou_endpoint_free(ep_);
    }

    picsou_replica local() const {
        picsou_replica r{};
        check(picsou_endpoint_local(ep_, &r));
        return r;
    }
    /** Replicas of RSM `rsm` (0 or 1) in the deployment. */
    uint16_t replica_count(uint8_t rsm) const {
        uint16_t n = 0;
        check(picsou_endpoint_replica_count(ep_, rsm, &n));
        return n;
    }
    /** The address of `replica` in the deployment file ("ip:port"). */
    std::string replica_address(picsou_replica replica) const {
        std::string text(64, '\0');
        size_t len = 0;
        picsou_result rc = picsou_endpoint_replica_address(ep_, replica, text.data(), text.size(), &len);
        if (rc == PICSOU_ERR_BUFFER_TOO_SMALL) {
            text.assign(len, '\0');
            rc = picsou_endpoint_replica_address(ep_, replica, text.data(), text.size(), &len);
        }
        check(rc);
        text.resize(len);
        return text;
    }
    /** False under backpressure (PICSOU_ERR_FULL: retry after a QUACK). */
    bool submit(uint64_t now_ns, uint64_t seq, const void *data, size_t len, const void *proof = nullptr,
                size_t proof_len = 0) {
        picsou_result rc = picsou_endpoint_submit(ep_, now_ns, seq, static_cast<const uint8_t *>(data), len,
                                                  static_cast<const uint8_t *>(proof), proof_len);
        if (rc == PICSOU_ERR_FULL) return false;
        check(rc);
        return true;
    }
    /** The name of the previous release; removed in the next one. */
    [[deprecated("use submit")]] bool transmit(uint64_t now_ns, uint64_t seq, const void *data, size_t len,
                                               const void *proof = nullptr, size_t proof_len = 0) {
        return submit(now_ns, seq, data, len, proof, proof_len);
    }
    void handle_frame(uint64_t now_ns, picsou_replica from, const void *data, size_t len) {
        check(picsou_endpoint_handle_frame(ep_, now_ns, from, static_cast<const uint8_t *>(data), len));
    }
    void handle_timeout(uint64_t now_ns) { check(picsou_endpoint_handle_timeout(ep_, now_ns)); }
    std::optional<uint64_t> poll_timeout() const {
        uint64_t t = 0;
        picsou_result rc = picsou_endpoint_poll_timeout(ep_, &t);
        if (rc == PICSOU_EMPTY) return std::nullopt;
        check(rc);
        return t;
    }
    /** The next frame into `buf` (grown as needed), or nullopt when none is due. */
    std::optional<Transmit> poll_transmit(uint64_t now_ns, std::vector<uint8_t> &buf) {
        for (;;) {
            Transmit t{};
            size_t len = 0;
            picsou_result rc = picsou_endpoint_poll_transmit(ep_, now_ns, buf.data(), buf.size(), &t.to, &len);
            if (rc == PICSOU_EMPTY) return std::nullopt;
            if (rc == PICSOU_ERR_BUFFER_TOO_SMALL) {
                buf.resize(len);
                continue;
            }
            check(rc);
            t.size = len;
            return t;
        }
    }
    /** The next event, its bytes into `buf` (grown as needed), or nullopt when there is none. */
    std::optional<picsou_event> poll_event(std::vector<uint8_t> &buf) {
        for (;;) {
            picsou_event ev{};
            size_t len = 0;
            picsou_result rc = picsou_endpoint_poll_event(ep_, buf.data(), buf.size(), &ev, &len);
            if (rc == PICSOU_EMPTY) return std::nullopt;
            if (rc == PICSOU_ERR_BUFFER_TOO_SMALL) {
                buf.resize(len);
                continue;
            }
            check(rc);
            return ev;
        }
    }
    void set_blocked(picsou_replica peer, bool blocked) { check(picsou_endpoint_set_blocked(ep_, peer, blocked)); }
    void local_has(uint64_t now_ns, uint64_t seq) { check(picsou_endpoint_local_has(ep_, now_ns, seq)); }
    uint64_t quacked() const {
        uint64_t q = 0;
        check(picsou_endpoint_quacked(ep_, &q));
        return q;
    }
    /** The name of the previous release; removed in the next one. */
    [[deprecated("use quacked")]] uint64_t quack() const { return quacked(); }
    uint64_t received() const {
        uint64_t r = 0;
        check(picsou_endpoint_received(ep_, &r));
        return r;
    }
    uint64_t submit_capacity() const {
        uint64_t c = 0;
        check(picsou_endpoint_submit_capacity(ep_, &c));
        return c;
    }
    /** The name of the previous release; removed in the next one. */
    [[deprecated("use submit_capacity")]] uint64_t transmit_capacity() const { return submit_capacity(); }
    picsou_endpoint_stats stats() const {
        picsou_endpoint_stats s{};
        check(picsou_endpoint_get_stats(ep_, &s));
        return s;
    }
    picsou_endpoint *get() const noexcept { return ep_; }

private:
    picsou_endpoint *ep_ = nullptr;
};

}  // namespace picsou

#endif /* PICSOU_HPP */
