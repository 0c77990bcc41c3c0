#include "comm/ucx.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "comm/watchdog.h"
#include "src/core/error.h"

namespace sy::comm {

namespace detail {
void throw_ucx_error(ucs_status_t status, const char* call, const char* file, int line) {
  std::ostringstream os;
  os << "rank " << world_rank() << ": " << file << ":" << line << ": " << call
     << " failed: " << ucs_status_string(status);
  throw std::runtime_error(os.str());
}
}  // namespace detail

namespace {

// Every rank's byte blob, concatenated in rank order; offsets[i] is where rank i's starts.
std::vector<char> allgather_blobs(MPI_Comm comm, const void* data, std::size_t bytes,
                                  std::vector<int>& offsets) {
  int size = 0;
  MPI_CHECK(MPI_Comm_size(comm, &size));
  SY_CHECK(bytes <= 1u << 30, "UCX blob of " << bytes << " bytes");
  const int my_bytes = static_cast<int>(bytes);
  std::vector<int> lens(static_cast<std::size_t>(size));
  MPI_CHECK(MPI_Allgather(&my_bytes, 1, MPI_INT, lens.data(), 1, MPI_INT, comm));
  offsets.assign(static_cast<std::size_t>(size), 0);
  int total = 0;
  for (int i = 0; i < size; ++i) {
    offsets[static_cast<std::size_t>(i)] = total;
    total += lens[static_cast<std::size_t>(i)];
  }
  std::vector<char> all(static_cast<std::size_t>(total));
  MPI_CHECK(MPI_Allgatherv(data, my_bytes, MPI_BYTE, all.data(), lens.data(), offsets.data(),
                           MPI_BYTE, comm));
  return all;
}

constexpr const char* kTcpSegmentBytes = "1m";  // see the constructor

struct FreeDeleter {
  void operator()(char* p) const { std::free(p); }
};

}  // namespace

UcxPeers::UcxPeers(MPI_Comm comm, std::vector<std::string> peer_names, Watchdog* watchdog)
    : comm_(comm), peer_names_(std::move(peer_names)), watchdog_(watchdog) {
  MPI_CHECK(MPI_Comm_size(comm_, &size_));
  MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  SY_CHECK(static_cast<int>(peer_names_.size()) == size_,
           "peer_names has " << peer_names_.size() << " entries for " << size_ << " ranks");
  const auto P = static_cast<std::size_t>(size_);
  eps_.assign(P, nullptr);
  rkeys_.assign(P, nullptr);
  remote_base_.assign(P, 0);
  for (int i = 0; i < size_; ++i) err_.push_back(std::make_unique<ErrArg>(ErrArg{this, i}));
  try {
    ucp_config_t* raw_config = nullptr;
    UCX_CHECK(ucp_config_read(nullptr, nullptr, &raw_config));
    const std::unique_ptr<ucp_config_t, decltype(&ucp_config_release)> config(raw_config,
                                                                              &ucp_config_release);
    // Over TCP, UCX 1.13 has no RMA lane: a put travels as active messages of TX_SEG_SIZE bytes
    // (8 KiB by default), each one copied into place by the target's progress. Our puts are few
    // and large (one per node peer per phase), so larger segments mean far fewer of them; 1 MiB
    // measured best (comm/README.md, "segment size"; the cost is UCX's TCP buffer pools, which
    // grow 8 segments at a time). Only this context is changed -- MPI's own UCX keeps its
    // defaults. An explicit UCX_TCP_TX/RX_SEG_SIZE in the environment wins, and one of the two
    // given alone sets both (UCX needs RX >= TX: TX 256k alone met our RX 1m's absence as UCX's
    // 64 KiB RX and failed ucp_worker_create). Where UCX_TLS names transports without tcp (an
    // InfiniBand job's rc,sm,self) nothing is set: UCX warned on every rank of keys no
    // transport took.
    const char* tx = std::getenv("UCX_TCP_TX_SEG_SIZE");
    const char* rx = std::getenv("UCX_TCP_RX_SEG_SIZE");
    const char* tls = std::getenv("UCX_TLS");
    const std::string tls_list = tls ? tls : "";
    const bool tcp_possible = tls_list.empty() || tls_list.front() == '^' ||
                              tls_list.find("tcp") != std::string::npos ||
                              tls_list.find("all") != std::string::npos;
    if (tcp_possible && !(tx && rx)) {
      const char* both = tx ? tx : rx ? rx : kTcpSegmentBytes;
      UCX_CHECK(ucp_config_modify(config.get(), "TX_SEG_SIZE", both));
      UCX_CHECK(ucp_config_modify(config.get(), "RX_SEG_SIZE", both));
    }
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features = UCP_FEATURE_RMA;
    ucp_worker_params_t worker_params{};
    worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    worker_params.thread_mode = UCS_THREAD_MODE_SINGLE;  // only the main thread calls UCX
    try {
      UCX_CHECK(ucp_init(&params, config.get(), &context_));
      UCX_CHECK(ucp_worker_create(context_, &worker_params, &worker_));
    } catch (const std::runtime_error& e) {  // e.g. UCX_TLS naming no transport this host has
      throw std::runtime_error(std::string(e.what()) +
                               " (UCX could not start for parallel.internode=ucx: see UCX's lines "
                               "above and UCX_TLS, or set parallel.internode=mpi)");
    }

    ucp_address_t* address = nullptr;
    std::size_t address_bytes = 0;
    UCX_CHECK(ucp_worker_get_address(worker_, &address, &address_bytes));
    std::vector<int> offsets;
    std::vector<char> addresses;
    try {
      addresses = allgather_blobs(comm_, address, address_bytes, offsets);
    } catch (...) {
      ucp_worker_release_address(worker_, address);
      throw;
    }
    ucp_worker_release_address(worker_, address);

    for (int p = 0; p < size_; ++p) {
      if (p == rank_) continue;
      ucp_ep_params_t ep_params{};
      ep_params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
                             UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
      ep_params.address = reinterpret_cast<const ucp_address_t*>(
          addresses.data() + offsets[static_cast<std::size_t>(p)]);
      // PEER mode: a dead peer fails our requests and calls on_endpoint_error instead of hanging.
      ep_params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
      ep_params.err_handler.cb = &UcxPeers::on_endpoint_error;
      ep_params.err_handler.arg = err_[static_cast<std::size_t>(p)].get();
      // PEER mode needs a transport that can report a dead peer: UCX_TLS without tcp (sm,self)
      // leaves none between nodes, which UCX says as "Destination is unreachable".
      const ucs_status_t st =
          ucp_ep_create(worker_, &ep_params, &eps_[static_cast<std::size_t>(p)]);
      if (st == UCS_ERR_UNREACHABLE)
        throw std::runtime_error(
            "rank " + std::to_string(world_rank()) + ": UCX cannot reach " +
            peer_names_[static_cast<std::size_t>(p)] + " (ucp_ep_create: " + ucs_status_string(st) +
            "): the inter-node exchange needs a network transport UCX can detect a failed peer "
            "on; include tcp (or your IB transports) in UCX_TLS, or set parallel.internode=mpi");
      UCX_CHECK(st);
    }
    // Wire up now (flush every endpoint, then a progressing barrier) so that the first exchange
    // does not pay for it and transports() reports the lanes actually chosen.
    {
      WatchdogScope scope(watchdog_, "UCX endpoint wire-up with the node peers");
      ucp_request_param_t param{};
      for (int p = 0; p < size_; ++p) {
        if (p == rank_) continue;
        wait_request(ucp_ep_flush_nbx(eps_[static_cast<std::size_t>(p)], &param), p,
                     "UCX endpoint wire-up");
      }
      MPI_Request barrier = MPI_REQUEST_NULL;
      MPI_CHECK(MPI_Ibarrier(comm_, &barrier));
      wait_mpi(barrier, "UCX endpoint wire-up");
    }
    transports_ = read_transports();
  } catch (...) {
    teardown();
    throw;
  }
}

UcxPeers::~UcxPeers() {
  teardown();
}

void UcxPeers::teardown() noexcept {
  release_region();
  // FORCE: a local close that needs no answer from the peer (which may be gone, or blocked in
  // MPI). Allowed because the endpoints use UCP_ERR_HANDLING_MODE_PEER.
  std::vector<void*> closing;
  for (ucp_ep_h& ep : eps_) {
    if (!ep) continue;
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = UCP_EP_CLOSE_FLAG_FORCE;
    void* request = ucp_ep_close_nbx(ep, &param);
    if (request && !UCS_PTR_IS_ERR(request)) closing.push_back(request);
    ep = nullptr;
  }
  for (void* request : closing) {
    // A forced close completes locally; the bound only guards against a UCX bug.
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (ucp_request_check_status(request) == UCS_INPROGRESS &&
           std::chrono::steady_clock::now() < give_up) {
      ucp_worker_progress(worker_);
    }
    ucp_request_free(request);
  }
  for (auto& [request, peer] : pending_) {
    if (request && !UCS_PTR_IS_ERR(request)) ucp_request_free(request);
  }
  pending_.clear();
  if (worker_) ucp_worker_destroy(worker_);
  worker_ = nullptr;
  if (context_) ucp_cleanup(context_);
  context_ = nullptr;
}

void UcxPeers::on_endpoint_error(void* arg, ucp_ep_h /*ep*/, ucs_status_t status) {
  const auto* err = static_cast<const ErrArg*>(arg);
  if (err->self->failed_peer_ < 0) {
    err->self->failed_peer_ = err->peer;
    err->self->failed_status_ = status;
  }
}

std::string peer_failure_words(ucs_status_t status) {
  std::string words = "the peer process is gone or unreachable";
  if (status == UCS_ERR_ENDPOINT_TIMEOUT)
    words +=
        ", or this rank itself stalled (stopped, swapped out) past UCX's timeout -- then the "
        "peer is alive, and the other ranks' messages say what they waited for";
  return words;
}

void UcxPeers::progress_once() {
  // Oversubscribed ranks (more ranks than cores) must give the core away while idle, or the rank
  // they wait for never runs.
  if (ucp_worker_progress(worker_) == 0) std::this_thread::yield();
}

void UcxPeers::throw_if_failed(const char* what) const {
  if (failed_peer_ < 0) return;
  std::ostringstream os;
  os << "rank " << world_rank() << ": UCX endpoint to "
     << peer_names_[static_cast<std::size_t>(failed_peer_)] << " failed ("
     << ucs_status_string(failed_status_) << ") during " << what << ": "
     << peer_failure_words(failed_status_);
  throw std::runtime_error(os.str());
}

void UcxPeers::wait_request(void* request, int peer, const char* what) {
  if (request == nullptr) return;  // completed immediately
  ucs_status_t status = UCS_OK;
  if (UCS_PTR_IS_ERR(request)) {
    status = UCS_PTR_STATUS(request);
  } else {
    while ((status = ucp_request_check_status(request)) == UCS_INPROGRESS) progress_once();
    ucp_request_free(request);
  }
  if (status == UCS_OK) return;
  throw_if_failed(what);  // the endpoint's own report names the peer best
  std::ostringstream os;
  os << "rank " << world_rank() << ": UCX request "
     << (peer >= 0 ? "to " + peer_names_[static_cast<std::size_t>(peer)] : std::string("flush"))
     << " failed (" << ucs_status_string(status) << ") during " << what;
  throw std::runtime_error(os.str());
}

void UcxPeers::wait_mpi(MPI_Request& request, const char* what) {
  int done = 0;
  MPI_CHECK(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
  while (!done) {
    progress_once();
    MPI_CHECK(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (done || failed_peer_ < 0) continue;
    // A peer's endpoint failed. If the peer merely closed after finishing its part, the barrier
    // still completes; give it a moment before calling the peer gone.
    const auto grace = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (!done && std::chrono::steady_clock::now() < grace) {
      progress_once();
      MPI_CHECK(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    }
    if (!done) throw_if_failed(what);  // the request stays pending: the job is going down
  }
}

void UcxPeers::release_region() noexcept {
  for (ucp_rkey_h& rkey : rkeys_) {
    if (rkey) ucp_rkey_destroy(rkey);
    rkey = nullptr;
  }
  if (memh_) ucp_mem_unmap(context_, memh_);
  memh_ = nullptr;
  exposed_bytes_ = 0;
}

void UcxPeers::expose(void* base, std::size_t bytes) {
  SY_CHECK(pending_.empty(), "expose() with " << pending_.size() << " puts in flight");
  release_region();
  ucp_mem_map_params_t params{};
  params.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  params.address = base;
  params.length = bytes;
  UCX_CHECK(ucp_mem_map(context_, &params, &memh_));
  exposed_bytes_ = bytes;

  void* packed = nullptr;
  std::size_t packed_bytes = 0;
  UCX_CHECK(ucp_rkey_pack(context_, memh_, &packed, &packed_bytes));
  std::vector<int> offsets;
  std::vector<char> keys;
  try {
    keys = allgather_blobs(comm_, packed, packed_bytes, offsets);
  } catch (...) {
    ucp_rkey_buffer_release(packed);
    throw;
  }
  ucp_rkey_buffer_release(packed);
  const uint64_t my_base = reinterpret_cast<uintptr_t>(base);
  MPI_CHECK(MPI_Allgather(&my_base, 1, MPI_UINT64_T, remote_base_.data(), 1, MPI_UINT64_T, comm_));
  for (int p = 0; p < size_; ++p) {
    if (p == rank_) continue;
    UCX_CHECK(ucp_ep_rkey_unpack(eps_[static_cast<std::size_t>(p)],
                                 keys.data() + offsets[static_cast<std::size_t>(p)],
                                 &rkeys_[static_cast<std::size_t>(p)]));
  }
}

void UcxPeers::put(int peer, const void* src, std::size_t bytes, std::size_t remote_offset) {
  SY_CHECK(peer >= 0 && peer < size_ && peer != rank_, "put to peer " << peer);
  if (bytes == 0) return;
  const auto p = static_cast<std::size_t>(peer);
  SY_CHECK(rkeys_[p] != nullptr, "put before expose()");
  // Every rank exposes a region of the same size (the exchange sizes them from group maxima).
  SY_CHECK(remote_offset + bytes <= exposed_bytes_,
           "put of " << bytes << " bytes at offset " << remote_offset << " past the "
                     << exposed_bytes_ << "-byte region of " << peer_names_[p]);
  throw_if_failed("a put");
  ucp_request_param_t param{};
  void* request =
      ucp_put_nbx(eps_[p], src, bytes, remote_base_[p] + remote_offset, rkeys_[p], &param);
  if (UCS_PTR_IS_ERR(request)) {
    std::ostringstream os;
    os << "rank " << world_rank() << ": ucp_put_nbx of " << bytes << " bytes to " << peer_names_[p]
       << " failed (" << ucs_status_string(UCS_PTR_STATUS(request))
       << "): " << peer_failure_words(UCS_PTR_STATUS(request));
    throw std::runtime_error(os.str());
  }
  if (request) pending_.emplace_back(request, peer);
}

void UcxPeers::complete_puts(const char* what) {
  WatchdogScope scope(watchdog_, what);
  // Move the list out first: a throwing wait must not leave freed requests behind.
  std::vector<std::pair<void*, int>> pending;
  pending.swap(pending_);
  for (std::size_t i = 0; i < pending.size(); ++i) {
    try {
      wait_request(pending[i].first, pending[i].second, what);
    } catch (...) {
      pending_.assign(pending.begin() + static_cast<std::ptrdiff_t>(i) + 1, pending.end());
      throw;
    }
  }
  pending_.swap(pending);
  pending_.clear();  // keeps the capacity: no allocation per step
  // Remote completion of every put (the requests above only guarantee the source is reusable).
  ucp_request_param_t param{};
  wait_request(ucp_worker_flush_nbx(worker_, &param), -1, what);
  throw_if_failed(what);
  MPI_Request barrier = MPI_REQUEST_NULL;
  MPI_CHECK(MPI_Ibarrier(comm_, &barrier));
  wait_mpi(barrier, what);
}

std::vector<std::string> UcxPeers::read_transports() {
  std::vector<std::string> out;
  for (ucp_ep_h ep : eps_) {
    if (!ep) continue;
    char* text = nullptr;
    std::size_t text_bytes = 0;
    FILE* stream = open_memstream(&text, &text_bytes);
    if (!stream) continue;
    ucp_ep_print_info(ep, stream);
    std::fclose(stream);
    const std::unique_ptr<char, FreeDeleter> owner(text);
    // Lines like "#  lane[0]:  1:tcp/lo.0 md[1]  -> md[1]/tcp/sysdev[255] am am_bw#0 ...".
    std::istringstream in(std::string(text, text_bytes));
    std::string line;
    while (std::getline(in, line)) {
      const auto lane = line.find("lane[");
      if (lane == std::string::npos) continue;
      std::istringstream words(line.substr(line.find(':', lane) + 1));
      std::string word;
      words >> word;  // "1:tcp/lo.0"
      const auto colon = word.find(':');
      if (colon != std::string::npos) word = word.substr(colon + 1);
      if (word.find('/') != std::string::npos) out.push_back(word);
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool UcxPeers::uses_tcp() const {
  return std::any_of(transports_.begin(), transports_.end(),
                     [](const std::string& t) { return t.rfind("tcp/", 0) == 0; });
}

}  // namespace sy::comm
