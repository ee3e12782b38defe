package wsgi

import (
	"sync/atomic"
)

// A member is one interpreter of a handler's pool and the slots that run
// requests in it: one member for SubInterpreter and MainInterpreter,
// WithInterpreters of them for IsolatedInterpreters.
type member struct {
	idx  int
	ip   atomic.Pointer[interp] // swapped by ReloadInterpreter
	free []int                  // indices of its idle slots; guarded by Handler.pickMu
	busy int                    // requests holding its slots; guarded by Handler.pickMu

	served   atomic.Uint64
	slotWait atomic.Int64 // nanoseconds requests waited before getting this member
}

// enter returns the member's current interpreter, held shared until the
// caller's RUnlock so it cannot be ended under the request.
func (m *member) enter() *interp {
	for {
		ip := m.ip.Load()
		ip.mu.RLock()
		if !ip.dead {
			return ip
		}
		ip.mu.RUnlock() // replaced while we waited: take the new one
	}
}

// pick takes an idle slot of the least busy member. The caller holds one
// of h.tokens, so there is one.
func (h *Handler) pick() *slot {
	h.pickMu.Lock()
	defer h.pickMu.Unlock()
	var best *member
	for _, m := range h.members {
		if len(m.free) > 0 && (best == nil || m.busy < best.busy) {
			best = m
		}
	}
	i := best.free[len(best.free)-1]
	best.free = best.free[:len(best.free)-1]
	best.busy++
	return &h.slots[i]
}

// release gives the slot back to its member and its token back to the
// handler.
func (h *Handler) release(s *slot) {
	s.wt.cb.Lock() // callbacks of this request still running finish first
	s.wt.gen.Add(1)
	s.wt.cb.Unlock()
	s.reset()
	h.pickMu.Lock()
	s.m.free = append(s.m.free, s.idx)
	s.m.busy--
	h.pickMu.Unlock()
	h.tokens <- struct{}{}
}
