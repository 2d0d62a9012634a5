// core/dist without a launcher: a world of one that never touches MPI, and what --version says.
#include "dist/world.h"

#include "../support/run_command.h"

#include <gtest/gtest.h>

namespace attnlab {
namespace {

TEST(World, WithoutALauncherIsAWorldOfOne) {
  ASSERT_FALSE(dist::launched_by_mpi());
  dist::World& world = dist::World::instance();
  EXPECT_EQ(world.rank(), 0);
  EXPECT_EQ(world.size(), 1);
  EXPECT_TRUE(world.root());
  EXPECT_FALSE(world.distributed());
  EXPECT_EQ(world.mpi(), nullptr);
  EXPECT_EQ(world.prefix(), "");
  const uint64_t words[] = {7, 9};
  EXPECT_EQ(world.all_gather(words, "a test"), (std::vector<uint64_t>{7, 9}));
  EXPECT_NO_THROW(dist::check_same_everywhere(world, {{"the experiment", 1}, {"the data", 2}}));
}

TEST(World, VersionSaysWhetherMpiIsBuiltIn) {
  test::CommandResult r = test::run_command(std::string(ATTNLAB_EXE) + " --version");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("attnlab "), std::string::npos) << r.out;
  const std::string expected = dist::mpi_built_in() ? "(distributed: " + dist::mpi_description() + ")" : "(distributed: no, built without MPI)";
  EXPECT_NE(r.out.find(expected), std::string::npos) << r.out;
  if (dist::mpi_built_in()) {
    EXPECT_NE(r.out.find("Open MPI"), std::string::npos) << r.out;
  }
}

}  // namespace
}  // namespace attnlab
