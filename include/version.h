/* version.h - the daemon's and the protocol's version. */
#ifndef FOLIOD_VERSION_H
#define FOLIOD_VERSION_H

#define FOLIOD_VERSION "0.1.0"
#define FOLIOD_PROTOCOL 1

#endif
