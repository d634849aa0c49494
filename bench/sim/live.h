/*
 * sim -w live: the live benchmark's workload (live.c).
 */

#ifndef SIM_LIVE_H
#define SIM_LIVE_H

int sim_live_main(int argc, char **argv);

#endif /* SIM_LIVE_H */
