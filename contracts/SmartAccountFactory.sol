// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {SmartAccount} from "./SmartAccount.sol";

/// @title SmartAccountFactory
/// @notice Deploys SmartAccounts with CREATE2, so an account's address is known
/// before it exists (the counterfactual accounts ERC-6492 signatures come from).
/// @dev createAccount is idempotent: a second call for the same owner and salt
/// returns the existing account. The owner is part of the init code, so the
/// address commits to it: nobody can deploy someone else's address with
/// another owner.
contract SmartAccountFactory {
    event AccountCreated(address indexed account, address indexed owner, bytes32 salt);

    function createAccount(address owner, bytes32 salt) external returns (address account) {
        account = accountAddress(owner, salt);
        if (account.code.length == 0) {
            SmartAccount created = new SmartAccount{salt: salt}(owner);
            require(address(created) == account, "SmartAccountFactory: address mismatch");
            emit AccountCreated(account, owner, salt);
        }
    }

    function accountAddress(address owner, bytes32 salt) public view returns (address) {
        bytes32 initCodeHash = keccak256(abi.encodePacked(type(SmartAccount).creationCode, abi.encode(owner)));
        return address(uint160(uint256(keccak256(abi.encodePacked(bytes1(0xff), address(this), salt, initCodeHash)))));
    }
}
