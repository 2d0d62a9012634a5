// core/dist/world.h — this process's place among the ranks of a distributed job (Open MPI), or a
// world of one.
//
// Contract:
// - World::instance() is the process's world. A process started by an MPI launcher (mpirun, or
//   srun --mpi=pmix: recognised by the launcher's environment, OMPI_COMM_WORLD_SIZE / PMIX_RANK /
//   PMI_RANK) initialises MPI on the first call; any other process is a world of one (rank 0,
//   size 1) and never touches MPI, so everything works as in a single process without mpirun. A
//   binary built without MPI (ATTNLAB_MPI=OFF) started by a launcher with more than one rank is an
//   error (each rank would train alone), raised by instance().
// - One thread talks to MPI: the world's communication thread, which calls MPI_Init_thread
//   (MPI_THREAD_FUNNELED: only that thread ever calls MPI) and MPI_Finalize. Every exchange below
//   is handed to it. It is not a compute thread: it sleeps on a condition variable, or between
//   MPI_Test polls (50 µs to 1 ms apart) while a reduction is in flight, so TBB keeps every core.
// - all_gather(mine, what): every rank contributes the same number of words; every rank gets
//   the table of all ranks' words (rank-major). It passes through rank 0 (point to point), so a
//   rank that does not answer is known by name: rank 0 waits rank_timeout() seconds for each
//   rank, then prints "rank 0: rank R did not answer within --rank-timeout S s (WHAT)" and aborts
//   the job (abort below); the other ranks wait twice as long for rank 0, then name
//   it the same way. A world of one returns `mine`.
// - abort(code) ends this rank at once with `code` (_exit, without MPI_Finalize); mpirun then
//   ends every other rank of the job (a rank that leaves with a non-zero code aborts the job).
// - send_text(to, text) / receive_text(from) pass one text between two ranks (a sweep's work
//   and results); receive_text(-1) takes the next text from any rank and says which. They wait as
//   long as it takes (a variant trains for hours); mpirun ends the job when a rank dies.
// - A roll call names the ranks that stopped answering inside a collective, where MPI does not
//   say which is missing: ranks_not_answering(seconds), on rank 0, asks every other rank point to
//   point and returns, after at most `seconds`, those that did not reply; the others reply from
//   answer_roll_call(), which they call while they wait in such a collective or in all_gather (it
//   returns at once).
// - World::alone() is a world of one for work that a rank does on its own under mpirun (a sweep
//   variant trained by one rank): it never talks to MPI.
// - Messages a rank prints name it: prefix() is "rank R: " in a world of several ranks, else "".
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnlab::dist {

// What a poller on the communication thread reports (mpi_thread.h, add_poller): done for good; a
// request started or completed; requests pending that did not move; nothing in flight.
enum class PollState { Finished, Progressed, InFlight, Idle };

struct DistError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Whether this binary was built with MPI, and which ("Open MPI 4.1.4"; "no MPI" otherwise).
bool mpi_built_in();
std::string mpi_description();
// Whether the environment says an MPI launcher started this process, and with how many ranks
// (0 when it does not say).
bool launched_by_mpi();

class MpiThread;  // world.cpp: the communication thread

class World {
 public:
  static World& instance();
  static World& alone();
  // Whether instance() has been called (and so MPI may be running): main's error path asks.
  static bool started();
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool root() const { return rank_ == 0; }
  bool distributed() const { return size_ > 1; }
  std::string prefix() const;

  double rank_timeout() const { return rank_timeout_; }
  void set_rank_timeout(double seconds) { rank_timeout_ = seconds; }

  std::vector<uint64_t> all_gather(std::span<const uint64_t> mine, const std::string& what);
  void send_text(int to, const std::string& text);
  std::pair<int, std::string> receive_text(int from);
  std::vector<int> ranks_not_answering(double seconds);
  void answer_roll_call();
  [[noreturn]] void abort(int code);

  // Groups of ranks (a sweep's variant trained by K ranks): every rank of this world calls it;
  // ranks with the same color >= 0 form a world of their own (ranks in this world's order), a
  // negative color joins none (null).
  std::unique_ptr<World> split(int color);

  // For dist's own reducers: the communication thread (null in a world of one) and this world's
  // communicator on it.
  MpiThread* mpi() { return mpi_; }
  int comm_index() const { return comm_; }

 private:
  World();
  struct Alone {};
  explicit World(Alone);
  std::unique_ptr<MpiThread> owned_;  // the process's world owns the thread; groups borrow it
  MpiThread* mpi_ = nullptr;
  int comm_ = 0;
  int rank_ = 0, size_ = 1;
  double rank_timeout_ = 300;
};

// The start-up check: every rank contributes (what, hash) pairs, the same names in the same order
// (the binary's version, the experiment, its overrides, the data, ...). When a rank's hash
// differs from rank 0's, every rank throws DistError naming the first such rank and everything
// that differs: "rank 1 differs from rank 0 in: the overrides, the data; every rank must run the
// same binary with the same experiment, overrides and data".
void check_same_everywhere(World& world, const std::vector<std::pair<std::string, uint64_t>>& parts);

}  // namespace attnlab::dist
