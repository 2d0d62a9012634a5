// A plugin whose registration fails half-way: the first type is added, then it throws. The loader
// must report the exception with the library's name and register nothing from it.
#include "node/plugin_api.h"

#include <stdexcept>

ATTNLAB_PLUGIN(registrar) {
  attnlab::NodeSchema schema;
  schema.name = "test.half_registered";
  schema.doc = "never visible";
  registrar.add(std::move(schema), [](const attnlab::Attrs&, const attnlab::Registry&) -> std::unique_ptr<attnlab::Node> { return nullptr; });
  throw std::runtime_error("table of constants is missing");
}
