// core/dist/world.cpp — the world, its communication thread, and the rank-naming exchange (world.h).
#include "dist/world.h"

#ifdef ATTNLAB_HAVE_MPI
#include "dist/mpi_thread.h"
#endif

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <sstream>

namespace attnlab::dist {

namespace {

std::atomic<bool> world_started{false};
constexpr int kTextTag = 13;
constexpr int kRollCallTag = 14, kPresentTag = 15;

}  // namespace

bool launched_by_mpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"})
    if (std::getenv(name)) return true;
  return false;
}

#ifdef ATTNLAB_HAVE_MPI

bool mpi_built_in() { return true; }

std::string mpi_description() {
#ifdef OMPI_MAJOR_VERSION
  return "Open MPI " + std::to_string(OMPI_MAJOR_VERSION) + "." + std::to_string(OMPI_MINOR_VERSION) + "." +
         std::to_string(OMPI_RELEASE_VERSION);
#else
  return "MPI " + std::to_string(MPI_VERSION) + "." + std::to_string(MPI_SUBVERSION);
#endif
}

// ---- The communication thread ---------------------------------------------------------------------

MpiThread::MpiThread() {
  std::mutex ready_mutex;
  std::condition_variable ready;
  bool initialised = false;
  thread_ = std::thread([&] {
    try {
      int provided = 0;
      if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        throw DistError("MPI_Init_thread failed");
      if (provided < MPI_THREAD_FUNNELED)
        throw DistError("the MPI library offers no MPI_THREAD_FUNNELED (only level " + std::to_string(provided) + ")");
      MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
      MPI_Comm_size(MPI_COMM_WORLD, &size_);
      comms_.push_back(MPI_COMM_NULL);
      MPI_Comm_dup(MPI_COMM_WORLD, &comms_[0]);
    } catch (...) {
      init_error_ = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(ready_mutex);
      initialised = true;
    }
    ready.notify_one();
    if (!init_error_) loop();
  });
  std::unique_lock<std::mutex> lock(ready_mutex);
  ready.wait(lock, [&] { return initialised; });
  lock.unlock();
  if (init_error_) {
    thread_.join();
    std::rethrow_exception(init_error_);
  }
}

MpiThread::~MpiThread() {
  // Ending the process from this very thread (exit() inside MPI): nothing to finalise or join.
  if (std::this_thread::get_id() == thread_.get_id()) {
    thread_.detach();
    return;
  }
  call([this] {
    for (MPI_Comm& c : comms_)
      if (c != MPI_COMM_NULL) MPI_Comm_free(&c);
    MPI_Finalize();
  });
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void MpiThread::call(const std::function<void()>& fn) {
  std::mutex done_mutex;
  std::condition_variable done_cv;
  bool done = false;
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.push_back([&] {
      try {
        fn();
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard<std::mutex> done_lock(done_mutex);
      done = true;
      done_cv.notify_one();
    });
  }
  wake_.notify_one();
  std::unique_lock<std::mutex> lock(done_mutex);
  done_cv.wait(lock, [&] { return done; });
  if (error) std::rethrow_exception(error);
}

int MpiThread::split(int parent, int color, int key) {
  MPI_Comm c = MPI_COMM_NULL;
  MPI_Comm_split(comm(parent), color < 0 ? MPI_UNDEFINED : color, key, &c);
  if (c == MPI_COMM_NULL) return -1;
  comms_.push_back(c);
  return static_cast<int>(comms_.size()) - 1;
}

void MpiThread::wake() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    woken_ = true;
  }
  wake_.notify_one();
}

void MpiThread::add_poller(std::function<PollState()> fn) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    new_pollers_.push_back(std::move(fn));
  }
  wake_.notify_one();
}

void MpiThread::loop() {
  using std::chrono::microseconds;
  constexpr microseconds kSoon{50}, kLongest{1000};
  microseconds wait = kSoon;
  bool all_idle = true;  // no poller has a request in flight
  for (;;) {
    std::deque<std::function<void()>> jobs;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      auto has_work = [&] { return stopping_ || !jobs_.empty() || !new_pollers_.empty() || woken_; };
      if (pollers_.empty() || all_idle) wake_.wait(lock, has_work);
      else wake_.wait_for(lock, wait, has_work);
      if (stopping_ && jobs_.empty()) return;
      if (woken_) wait = kSoon;
      woken_ = false;
      jobs.swap(jobs_);
      for (auto& p : new_pollers_) pollers_.push_back(std::move(p));
      new_pollers_.clear();
    }
    for (auto& job : jobs) job();
    bool progressed = false;
    all_idle = true;
    for (size_t i = 0; i < pollers_.size();) {
      const PollState state = pollers_[i]();
      progressed = progressed || state == PollState::Progressed;
      all_idle = all_idle && state == PollState::Idle;
      if (state == PollState::Finished) pollers_.erase(pollers_.begin() + static_cast<std::ptrdiff_t>(i));
      else ++i;
    }
    wait = progressed ? kSoon : std::min(2 * wait, kLongest);
  }
}

// ---- The world ------------------------------------------------------------------------------------

World::World() {
  if (!launched_by_mpi()) return;
  owned_ = std::make_unique<MpiThread>();
  mpi_ = owned_.get();
  rank_ = mpi_->rank();
  size_ = mpi_->size();
}

World::~World() = default;

void World::abort(int code) {
  // Not MPI_Abort: Open MPI's abort waits for its help message to reach mpirun, forever when
  // mpirun is already ending the job. A rank that leaves without MPI_Finalize and with a non-zero
  // code makes mpirun end every other rank at once (orte_abort_on_non_zero_status).
  std::cerr.flush();
  std::fflush(nullptr);
  ::_exit(code);
}

std::vector<uint64_t> World::all_gather(std::span<const uint64_t> mine, const std::string& what) {
  if (!mpi_) return {mine.begin(), mine.end()};
  const int words = static_cast<int>(mine.size());
  std::vector<uint64_t> table(static_cast<size_t>(size_) * mine.size());
  std::vector<MPI_Request> requests;
  std::vector<int> peer_of;  // which rank each request waits for
  MPI_Comm comm = mpi_->comm(comm_);
  constexpr int kToRoot = 11, kFromRoot = 12;

  // Polls the requests until all are done; past the deadline, names the ranks still missing and
  // ends the job.
  auto wait_all = [&](double timeout) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
    std::vector<int> finished(requests.size(), 0);
    for (;;) {
      bool all = true;
      mpi_->call([&] {
        for (size_t i = 0; i < requests.size(); ++i)
          if (!finished[i]) {
            MPI_Test(&requests[i], &finished[i], MPI_STATUS_IGNORE);
            all = all && finished[i];
          }
      });
      if (all) return;
      if (std::chrono::steady_clock::now() > deadline) {
        std::ostringstream missing;
        int count = 0;
        for (size_t i = 0; i < requests.size(); ++i)
          if (!finished[i]) missing << (count++ ? ", " : "") << peer_of[i];
        std::cerr << "attnlab: error: " << prefix() << (count > 1 ? "ranks " : "rank ") << missing.str() << " did not answer within --rank-timeout "
                  << rank_timeout_ << " s (" << what << "); stopping every rank" << std::endl;
        abort(3);
      }
      // A rank that got through a collective before the others (not every rank's part of it
      // ends at once) waits here for rank 0, which may be naming the ranks that did not.
      answer_roll_call();
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  };

  if (rank_ == 0) {
    std::copy(mine.begin(), mine.end(), table.begin());
    requests.resize(static_cast<size_t>(size_ - 1));
    mpi_->call([&] {
      for (int r = 1; r < size_; ++r) {
        MPI_Irecv(table.data() + static_cast<size_t>(r) * mine.size(), words, MPI_UINT64_T, r, kToRoot, comm, &requests[r - 1]);
        peer_of.push_back(r);
      }
    });
    wait_all(rank_timeout_);
    requests.assign(static_cast<size_t>(size_ - 1), MPI_REQUEST_NULL);
    mpi_->call([&] {
      for (int r = 1; r < size_; ++r)
        MPI_Isend(table.data(), static_cast<int>(table.size()), MPI_UINT64_T, r, kFromRoot, comm, &requests[r - 1]);
    });
    wait_all(rank_timeout_);
  } else {
    requests.resize(2);
    peer_of = {0, 0};
    mpi_->call([&] {
      MPI_Isend(mine.data(), words, MPI_UINT64_T, 0, kToRoot, comm, &requests[0]);
      MPI_Irecv(table.data(), static_cast<int>(table.size()), MPI_UINT64_T, 0, kFromRoot, comm, &requests[1]);
    });
    // Rank 0 names a missing rank first; only when rank 0 itself is gone do the others report it.
    wait_all(2 * rank_timeout_);
  }
  return table;
}

std::vector<int> World::ranks_not_answering(double seconds) {
  if (!mpi_) return {};
  const size_t others = static_cast<size_t>(size_ - 1);
  // The buffers outlive the call: a rank that never answers never takes its call either, and the
  // job is aborted right after.
  static std::vector<int> calls, replies;
  calls.assign(others, 0);
  replies.assign(others, 0);
  std::vector<MPI_Request> sent(others, MPI_REQUEST_NULL), answered(others, MPI_REQUEST_NULL);
  mpi_->call([&] {
    for (int r = 1; r < size_; ++r) {
      MPI_Isend(&calls[r - 1], 1, MPI_INT, r, kRollCallTag, mpi_->comm(comm_), &sent[r - 1]);
      MPI_Irecv(&replies[r - 1], 1, MPI_INT, r, kPresentTag, mpi_->comm(comm_), &answered[r - 1]);
    }
  });
  std::vector<int> present(others, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (;;) {
    bool all = true;
    mpi_->call([&] {
      for (size_t i = 0; i < others; ++i)
        if (!present[i]) {
          MPI_Test(&answered[i], &present[i], MPI_STATUS_IGNORE);
          all = all && present[i];
        }
    });
    if (all || std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::vector<int> missing;
  for (size_t i = 0; i < others; ++i)
    if (!present[i]) missing.push_back(static_cast<int>(i) + 1);
  return missing;
}

void World::answer_roll_call() {
  if (!mpi_ || root()) return;
  static int reply = 1;  // the send completes whenever rank 0 takes it
  mpi_->call([&] {
    int called = 0;
    MPI_Iprobe(0, kRollCallTag, mpi_->comm(comm_), &called, MPI_STATUS_IGNORE);
    if (!called) return;
    int ignored = 0;
    MPI_Recv(&ignored, 1, MPI_INT, 0, kRollCallTag, mpi_->comm(comm_), MPI_STATUS_IGNORE);
    MPI_Request request = MPI_REQUEST_NULL;
    MPI_Isend(&reply, 1, MPI_INT, 0, kPresentTag, mpi_->comm(comm_), &request);
    MPI_Request_free(&request);
  });
}

void World::send_text(int to, const std::string& text) {
  if (!mpi_) throw DistError("send_text needs a world of several ranks");
  MPI_Request request = MPI_REQUEST_NULL;
  mpi_->call([&] { MPI_Isend(text.data(), static_cast<int>(text.size()), MPI_CHAR, to, kTextTag, mpi_->comm(comm_), &request); });
  for (int done = 0;;) {
    mpi_->call([&] { MPI_Test(&request, &done, MPI_STATUS_IGNORE); });
    if (done) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

std::pair<int, std::string> World::receive_text(int from) {
  if (!mpi_) throw DistError("receive_text needs a world of several ranks");
  for (;;) {
    int found = 0;
    std::pair<int, std::string> got;
    mpi_->call([&] {
      MPI_Status status;
      MPI_Iprobe(from < 0 ? MPI_ANY_SOURCE : from, kTextTag, mpi_->comm(comm_), &found, &status);
      if (!found) return;
      int count = 0;
      MPI_Get_count(&status, MPI_CHAR, &count);
      got.first = status.MPI_SOURCE;
      got.second.resize(static_cast<size_t>(count));
      MPI_Recv(got.second.data(), count, MPI_CHAR, status.MPI_SOURCE, kTextTag, mpi_->comm(comm_), MPI_STATUS_IGNORE);
    });
    if (found) return got;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

std::unique_ptr<World> World::split(int color) {
  if (!mpi_) throw DistError("split needs a world of several ranks");
  int index = -1;
  mpi_->call([&] { index = mpi_->split(comm_, color, rank_); });
  if (index < 0) return nullptr;
  std::unique_ptr<World> group(new World(Alone{}));
  group->mpi_ = mpi_;
  group->comm_ = index;
  mpi_->call([&] {
    MPI_Comm_rank(mpi_->comm(index), &group->rank_);
    MPI_Comm_size(mpi_->comm(index), &group->size_);
  });
  group->rank_timeout_ = rank_timeout_;
  return group;
}

#else  // no MPI built in

class MpiThread {};

namespace {
// The launcher's rank count from the environment, 0 when no launcher set it.
int launcher_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "SLURM_NTASKS"})
    if (const char* v = std::getenv(name)) {
      const int n = std::atoi(v);
      if (n > 0) return n;
    }
  return 0;
}
}  // namespace

bool mpi_built_in() { return false; }
std::string mpi_description() { return "no MPI"; }

World::World() {
  const int n = launcher_size();
  if (launched_by_mpi() && n > 1)
    throw DistError("this attnlab was built without MPI (ATTNLAB_MPI=OFF), but an MPI launcher started it as one of " +
                    std::to_string(n) + " ranks; each would train alone. Rebuild with libopenmpi-dev installed");
}

World::~World() = default;

void World::abort(int code) { ::_exit(code); }

std::vector<uint64_t> World::all_gather(std::span<const uint64_t> mine, const std::string&) { return {mine.begin(), mine.end()}; }
void World::send_text(int, const std::string&) { throw DistError("send_text needs a world of several ranks"); }
std::pair<int, std::string> World::receive_text(int) { throw DistError("receive_text needs a world of several ranks"); }
std::unique_ptr<World> World::split(int) { throw DistError("split needs a world of several ranks"); }
std::vector<int> World::ranks_not_answering(double) { return {}; }
void World::answer_roll_call() {}

#endif

World::World(Alone) {}

World& World::alone() {
  static World world{Alone{}};
  return world;
}

World& World::instance() {
  static World world;
  world_started = true;
  return world;
}

bool World::started() { return world_started; }

std::string World::prefix() const { return distributed() ? "rank " + std::to_string(rank_) + ": " : ""; }

void check_same_everywhere(World& world, const std::vector<std::pair<std::string, uint64_t>>& parts) {
  std::vector<uint64_t> mine;
  for (const auto& [name, hash] : parts) mine.push_back(hash);
  const std::vector<uint64_t> table = world.all_gather(mine, "the start-up check");
  for (int r = 1; r < world.size(); ++r) {
    std::string differs;
    for (size_t k = 0; k < parts.size(); ++k)
      if (table[static_cast<size_t>(r) * parts.size() + k] != table[k]) differs += (differs.empty() ? "" : ", ") + parts[k].first;
    if (!differs.empty())
      throw DistError("rank " + std::to_string(r) + " differs from rank 0 in: " + differs +
                      "; every rank must run the same attnlab binary with the same experiment, overrides and data");
  }
}

}  // namespace attnlab::dist
