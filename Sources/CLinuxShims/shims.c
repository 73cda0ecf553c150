// The helpers are inline in the header; this file gives the target an object to build.
#include "CLinuxShims.h"
