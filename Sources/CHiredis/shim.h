#ifndef SWITCHBOARD_CHIREDIS_SHIM_H
#define SWITCHBOARD_CHIREDIS_SHIM_H
// hiredis 0.14 (Debian libhiredis-dev): only the reply reader and the argv command
// formatter are used; all I/O happens on SwiftNIO channels in RedisBus.
#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#endif
