// A valid shared library that is not an attnlab plugin: it exports no attnlab entry point.
extern "C" int some_other_library_function() { return 7; }
