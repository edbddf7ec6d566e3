#pragma once
// Loading the shared real models once per test binary.

#include <depass/Model.hpp>
#include <depass/io/Load.hpp>

#include <map>
#include <memory>
#include <string>

namespace depass {
namespace test {

/// The model at `path`, loaded on first use and kept for the rest of the run.
template <typename Scalar>
const Model<Scalar>& cached_model(const std::string& path) {
  static std::map<std::string, std::unique_ptr<Model<Scalar>>> cache;
  std::unique_ptr<Model<Scalar>>& slot = cache[path];
  if (!slot) slot.reset(new Model<Scalar>(io::load_checkpoint<Scalar>(path)));
  return *slot;
}

}  // namespace test
}  // namespace depass
