export { main, ExitCode } from './main.js';
