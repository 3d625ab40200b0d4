/**
 * Where one SOCKS client connection is:
 * greeting → auth → request → opening → piping (CONNECT) or relaying (UDP ASSOCIATE), and from any of them → closed.
 * `closed` means we are done with the client: nothing more is sent except what is already queued.
 */
export type SocksState = 'greeting' | 'auth' | 'request' | 'opening' | 'piping' | 'relaying' | 'closed';

/** The allowed transitions. A step not listed is ignored (e.g. a late event for a closed connection). */
const NEXT: Readonly<Record<SocksState, readonly SocksState[]>> = {
  greeting: ['auth', 'closed'],
  auth: ['request', 'closed'],
  request: ['opening', 'closed'],
  opening: ['piping', 'relaying', 'closed'],
  piping: ['closed'],
  relaying: ['closed'],
  closed: [],
};

/** Whether a connection in state `from` may move to `to`. */
export function canMove(from: SocksState, to: SocksState): boolean {
  return NEXT[from].includes(to);
}
