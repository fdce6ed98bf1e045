// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

/// @title SmartAccountValidator
/// @notice A contract that is never deployed: its constructor, run by eth_call
/// (no `to`), answers whether a contract wallet accepts a signature, deploying
/// it first through its ERC-6492 factory call if it has no code yet. Nothing it
/// does is kept: an eth_call's state is thrown away.
/// @dev The constructor returns one 32-byte word instead of runtime code:
///   1 the wallet's isValidSignature returned the ERC-1271 magic value;
///   0 it answered anything else, reverted or ran out of its gas;
///   2 the factory call reverted or ran out of its gas;
///   3 the signer still has no code (the factory did not deploy it).
/// Each outside call gets at most `gasMax`, and only the first 32 bytes of
/// isValidSignature's return data are read, so a hostile wallet or factory
/// costs the node a bounded amount of work. Follows ERC-6492's off-chain
/// validation; written for Farthing.
contract SmartAccountValidator {
    bytes4 private constant ERC1271_MAGIC = 0x1626ba7e;

    constructor(
        address signer,
        bytes32 digest,
        address factory,
        bytes memory factoryCalldata,
        bytes memory signature,
        uint256 gasMax
    ) {
        uint256 verdict = _verdict(signer, digest, factory, factoryCalldata, signature, gasMax);
        assembly ("memory-safe") {
            mstore(0, verdict)
            return(0, 32)
        }
    }

    function _verdict(
        address signer,
        bytes32 digest,
        address factory,
        bytes memory factoryCalldata,
        bytes memory signature,
        uint256 gasMax
    ) private returns (uint256) {
        if (signer.code.length == 0 && factory != address(0)) {
            bool deployed;
            assembly ("memory-safe") {
                deployed := call(gasMax, factory, 0, add(factoryCalldata, 0x20), mload(factoryCalldata), 0, 0)
            }
            if (!deployed) {
                return 2;
            }
        }
        if (signer.code.length == 0) {
            return 3;
        }
        bytes memory query = abi.encodeWithSelector(ERC1271_MAGIC, digest, signature);
        bool ok;
        uint256 answer;
        assembly ("memory-safe") {
            ok := staticcall(gasMax, signer, add(query, 0x20), mload(query), 0, 0x20)
            if lt(returndatasize(), 0x20) { ok := 0 }
            answer := mload(0)
        }
        return ok && bytes4(bytes32(answer)) == ERC1271_MAGIC ? 1 : 0;
    }
}
