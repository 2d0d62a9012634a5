# attnlab_protobuf_cpp(SRCS HDRS PROTO...): C++ sources of .proto files that live under core/proto
# at their package path (core/proto/attnlab/ir/graph.proto declares package attnlab.ir). protoc
# runs with core/proto as its one import root, so each file is registered under its package path
# ("attnlab/ir/graph.proto", not a bare "graph.proto" that another library's file of the same name
# would clash with in a shared descriptor pool), and the headers land at the same relative path
# in the current binary directory ("attnlab/ir/graph.pb.h").
set(ATTNLAB_PROTO_ROOT ${CMAKE_CURRENT_LIST_DIR}/../proto)
get_filename_component(ATTNLAB_PROTO_ROOT ${ATTNLAB_PROTO_ROOT} ABSOLUTE)

function(attnlab_protobuf_cpp srcs_var hdrs_var)
  set(srcs)
  set(hdrs)
  foreach(proto ${ARGN})
    get_filename_component(abs ${proto} ABSOLUTE)
    file(RELATIVE_PATH rel ${ATTNLAB_PROTO_ROOT} ${abs})
    string(REGEX REPLACE "\\.proto$" "" stem ${rel})
    set(cc ${CMAKE_CURRENT_BINARY_DIR}/${stem}.pb.cc)
    set(h ${CMAKE_CURRENT_BINARY_DIR}/${stem}.pb.h)
    add_custom_command(
      OUTPUT ${cc} ${h}
      COMMAND protobuf::protoc --cpp_out ${CMAKE_CURRENT_BINARY_DIR} -I ${ATTNLAB_PROTO_ROOT} ${abs}
      DEPENDS ${abs} protobuf::protoc
      COMMENT "protoc ${rel}"
      VERBATIM)
    list(APPEND srcs ${cc})
    list(APPEND hdrs ${h})
  endforeach()
  set(${srcs_var} ${srcs} PARENT_SCOPE)
  set(${hdrs_var} ${hdrs} PARENT_SCOPE)
endfunction()
